import numpy as np
import pyro
import pytest
import torch
from scipy import stats

import probtwin as pt
from probtwin.infer import seeded
from probtwin.twins.likelihoods import Likelihood
from probtwin.twins.noise import (
    FlowNoise,
    IndependentNoise,
    LatentCountNoise,
    gauss_hermite_mean,
    make_noise,
    per_frame,
    resolve_likelihood,
)


def _sample(noise, loc, seed):
    with seeded(seed):
        return noise.sample(loc)


def _stats(y: np.ndarray) -> dict:
    from probtwin.data.arrays import TrialArray
    from probtwin.data.registry import response_stats

    return response_stats(TrialArray(y))


def _flow(n=5, k=2, zero_inflated=False, seed=0) -> tuple[FlowNoise, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 1.0, (400, n)) * (rng.uniform(size=(400, n)) < (0.7 if zero_inflated else 1.1))
    noise = FlowNoise(n, k, zero_inflated=zero_inflated)
    noise.initialize(_stats(y), "responses")
    with torch.no_grad():
        noise.loadings.copy_(torch.as_tensor(rng.normal(0, 0.5, (n, k)), dtype=torch.float32))
    return noise.double(), y


def test_choices_are_checked():
    assert resolve_likelihood("flow", None) == "flow"
    assert resolve_likelihood("latent", None) == "poisson"
    with pytest.raises(pt.DataError) as info:
        resolve_likelihood("flow", "poisson")
    assert info.value.field == "likelihood"
    with pytest.raises(pt.DataError, match="noise"):
        resolve_likelihood("gaussian_process", None)
    with pytest.raises(pt.DataError, match="likelihood"):
        resolve_likelihood("latent", "gamma")
    with pytest.raises(pt.DataError) as info:
        make_noise("latent", "poisson", 4, latent_rank=0)
    assert info.value.field == "latent_rank"
    with pytest.raises(pt.DataError, match="latent_rank"):
        make_noise("independent", "poisson", 4, latent_rank=2)
    with pytest.raises(pt.DataError, match="dequantize"):
        make_noise("zero_inflated_flow", "flow", 4, latent_rank=1, dequantize=True)


def test_flow_density_is_the_gaussian_of_the_transform_times_the_jacobian():
    noise, y = _flow()
    loc = torch.randn(6, 5, dtype=torch.float64)
    yt = torch.as_tensor(y[:6])
    with torch.no_grad():
        got = noise.log_prob(loc, yt)
        z, log_det = noise.flow(yt)
        c, psi = (t.detach() for t in noise.covariance())
    cov = (c @ c.T + torch.diag(psi)).numpy()
    for t in range(6):
        want = stats.multivariate_normal.logpdf(z[t].numpy(), loc[t].numpy(), cov) + log_det[t].sum().item()
        assert float(got[t]) == pytest.approx(want, rel=1e-8)


def test_zero_inflated_density_scores_zeros_and_the_positive_marginal():
    noise, y = _flow(zero_inflated=True)
    loc = torch.randn(8, 5, dtype=torch.float64)
    yt = torch.as_tensor(y[:8])
    assert (yt == 0).any()
    with torch.no_grad():
        got = noise.log_prob(loc, yt)
        c, psi = (t.detach() for t in noise.covariance())
        q = noise.q.numpy()
    cov = (c @ c.T + torch.diag(psi)).numpy()
    for t in range(8):
        pos = yt[t].numpy() > 0
        with torch.no_grad():
            z, log_det = noise.flow(yt[t : t + 1].clamp_min(1e-3))
        want = np.sum(np.where(pos, np.log(q), np.log1p(-q)))
        if pos.any():
            want += stats.multivariate_normal.logpdf(z[0, pos].numpy(), loc[t, pos].numpy(), cov[np.ix_(pos, pos)])
            want += log_det[0, pos].sum().item()
        assert float(got[t]) == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("zero_inflated", [False, True])
def test_flow_mean_covariance_and_samples_agree(zero_inflated):
    noise, _ = _flow(zero_inflated=zero_inflated)
    loc = torch.randn(1, 5, dtype=torch.float64).expand(40000, -1)
    with torch.no_grad():
        draws = _sample(noise, loc, 3)
        mean = noise.mean(loc[:1])[0]
        c, psi = (t.detach() for t in noise.covariance())
    np.testing.assert_allclose(draws.mean(0), mean, rtol=0.03)
    if not zero_inflated:  # the Gaussian space holds the stated covariance
        with torch.no_grad():
            z, _ = noise.flow(draws)
        np.testing.assert_allclose(np.cov(z.numpy().T), (c @ c.T + torch.diag(psi)).numpy(), atol=0.03)
    else:
        np.testing.assert_allclose((draws == 0).double().mean(0), 1 - noise.q.detach(), atol=0.01)


def test_gauss_hermite_mean_of_exp_is_the_lognormal_mean():
    loc, var = torch.tensor([[0.3, -1.0]], dtype=torch.float64), torch.tensor([0.5, 0.1], dtype=torch.float64)
    np.testing.assert_allclose(gauss_hermite_mean(torch.exp, loc, var.expand_as(loc)), torch.exp(loc + var / 2))


def test_flow_conditional_mean_is_the_gaussian_conditional():
    noise, y = _flow(k=1)
    loc = torch.randn(3, 5, dtype=torch.float64)
    yt = torch.as_tensor(y[:3])
    given = torch.tensor([True, True, False, True, False])
    with torch.no_grad():
        mean, cov = noise.latent_posterior(loc, yt, given)
        cond = noise.conditional_mean(loc, mean, cov)
        c, psi = (t.detach() for t in noise.covariance())
        z, _ = noise.flow(yt)
    sigma = (c @ c.T + torch.diag(psi)).numpy()
    o, u = given.numpy(), ~given.numpy()
    gain = sigma[np.ix_(u, o)] @ np.linalg.inv(sigma[np.ix_(o, o)])
    for t in range(3):
        m = loc[t, u].numpy() + gain @ (z[t, o] - loc[t, o]).numpy()
        v = np.diag(sigma[np.ix_(u, u)] - gain @ sigma[np.ix_(o, u)])
        x = torch.as_tensor(m[None] + np.sqrt(v)[None] * np.random.default_rng(t).standard_normal((200000, u.sum())))
        full = loc[t].expand(len(x), -1).clone()
        full[:, torch.as_tensor(u)] = x
        with torch.no_grad():
            mc = noise.flow.inverse(full)[:, torch.as_tensor(u)].mean(0)
        np.testing.assert_allclose(cond[t, torch.as_tensor(u)], mc, rtol=0.02)


def _count(rank=1, n=30, likelihood="poisson", seed=0):
    noise = LatentCountNoise(Likelihood(likelihood, n), n, rank)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        noise.loadings.copy_(torch.randn(n, rank, generator=g) * 0.4)
    return noise.double()


@pytest.mark.parametrize("likelihood", ["poisson", "negative_binomial"])
def test_laplace_posterior_matches_a_grid_posterior(likelihood):
    noise = _count(likelihood=likelihood)
    loc = torch.full((2, 30), 3.0, dtype=torch.float64)
    with torch.no_grad():
        y = _sample(noise, loc, 1)
        mask = torch.arange(30) < 20
        mean, cov = noise.latent_posterior(loc, y, mask)
        grid = torch.linspace(-5, 5, 4001, dtype=torch.float64)[:, None]
        rate = noise._rate(loc[:1], grid)  # (grid, neurons)
        for t in range(2):
            lp = (noise.likelihood.distribution(rate).log_prob(y[t]) * mask).sum(-1) - grid[:, 0] ** 2 / 2
            w = torch.softmax(lp, 0)
            post_mean = (w * grid[:, 0]).sum()
            post_var = (w * (grid[:, 0] - post_mean) ** 2).sum()
            mode = grid[torch.argmax(lp), 0]
            assert float(mean[t, 0]) == pytest.approx(float(mode), abs=0.005)  # Laplace: centred at the mode
            assert float(mean[t, 0]) == pytest.approx(float(post_mean), abs=0.05)
            assert float(cov[t, 0, 0]) == pytest.approx(float(post_var), rel=0.15)


def test_count_mean_is_kept_and_conditional_mean_is_the_lognormal_mean():
    noise = _count(rank=2)
    loc = torch.full((1, 30), 2.0, dtype=torch.float64)
    with torch.no_grad():
        draws = _sample(noise, loc.expand(60000, -1), 0)
        np.testing.assert_allclose(draws.mean(0), 2.0, rtol=0.03)  # E[y] = the location
        m = torch.tensor([[0.5, -0.3]], dtype=torch.float64)
        v = torch.tensor([[[0.2, 0.05], [0.05, 0.1]]], dtype=torch.float64)
        h = torch.distributions.MultivariateNormal(m[0], v[0]).sample((200000,))
        mc = noise._rate(loc, h).mean(0)
        np.testing.assert_allclose(noise.conditional_mean(loc, m, v)[0], mc, rtol=0.01)


def test_importance_weighted_bound_approaches_the_marginal_from_below():
    noise = _count(rank=1, n=8)
    loc = torch.full((3, 8), 2.0, dtype=torch.float64)
    with torch.no_grad():
        y = _sample(noise, loc, 5)
        grid = torch.linspace(-7, 7, 8001, dtype=torch.float64)[:, None]
        lp = noise.likelihood.distribution(noise._rate(loc[:1], grid)).log_prob(y[:, None]).sum(-1)  # (trials, grid)
        lp = lp + torch.distributions.Normal(0.0, 1.0).log_prob(grid[:, 0])
        exact = torch.logsumexp(lp, -1) + torch.log(grid[1, 0] - grid[0, 0])
        center = loc
        estimate, se = noise.log_predictive(loc.expand(4000, -1, -1), y, center=center, behavior=None)
    assert torch.all(se > 0)
    np.testing.assert_allclose(estimate, exact, atol=float(5 * se.max()) + 1e-3)


def test_independent_log_predictive_is_the_sum_of_pointwise_predictives():
    noise = IndependentNoise(Likelihood("poisson", 4))
    loc = torch.rand(7, 3, 4) * 3 + 0.5
    y = torch.poisson(torch.full((3, 4), 2.0))
    lp, se = noise.log_predictive(loc, y, None, None)
    expected = np.log(stats.poisson.pmf(y.numpy(), loc.numpy()).mean(0)).sum(-1)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)
    assert se is None


def test_dequantization_noise_is_on_the_open_interval():
    from probtwin.twins.noise import open_uniform

    with seeded(0):
        u = open_uniform(torch.zeros(2_000_000))
    assert float(u.min()) > 0 and float(u.max()) < 1
    assert float(u.mean()) == pytest.approx(0.5, abs=1e-3)
    noise = make_noise("flow", "flow", 3, 1, dequantize=True)
    noise.initialize(_stats(np.array([[0.0, 1, 4], [2, 0, 0], [5, 3, 1]])), "responses")
    y = torch.zeros(4, 3)  # all zeros: y + u must stay inside the flow's log stage
    with seeded(1), torch.no_grad():
        lp = noise.pointwise_log_likelihood(torch.zeros(1, 4, 3), y)
    assert torch.isfinite(lp).all()


def test_a_dequantized_flow_scores_counts_once_dequantized():
    noise = make_noise("flow", "flow", 3, 1, dequantize=True)
    counts = np.array([[0.0, 1, 4], [2, 0, 0], [5, 3, 1]])
    noise.initialize(_stats(counts), "responses")
    y = torch.tensor(counts, dtype=torch.float32)
    loc = torch.zeros(1, 3, 3)
    batch = {"session": 0, "n_total": 3, "index": torch.arange(3), "responses": y}
    trace = pyro.poutine.trace(lambda: noise.observe("responses_0", loc[0], batch)).get_trace()
    assert torch.equal(trace.nodes["responses_0"]["value"], y)  # the site holds the counts; u is drawn in log_prob
    d = noise.distribution(loc)
    with seeded(5), torch.no_grad():
        draws = d.sample()
    assert torch.equal(draws, torch.floor(draws))  # responses are counts everywhere


def test_a_per_frame_latent_state_scores_each_recorded_frame_given_its_own_state():
    """Responses per frame with a latent state per frame: the trial's log density is the sum,
    over its recorded frames, of each frame's density given that frame's state; expanding over
    posterior draws keeps the state's (frames, k) axes."""
    torch.manual_seed(0)
    noise = LatentCountNoise(Likelihood("poisson", 4), 4, rank=2).double()
    loc = torch.rand(3, 5, 4, dtype=torch.float64) * 3 + 0.5  # (trials, frames, neurons)
    state = torch.randn(3, 5, 2, dtype=torch.float64)
    y = torch.poisson(loc)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False  # a trial of three frames
    response = noise.distribution(loc, state, frames=True, frame_mask=mask)
    assert response.batch_shape == (3,) and response.event_shape == (5, 4)
    c = noise.loadings.detach()
    rate = loc * torch.exp(state @ c.T - 0.5 * (c**2).sum(-1))
    per_frame = torch.distributions.Poisson(rate).log_prob(y).sum(-1)
    torch.testing.assert_close(response.log_prob(y), (per_frame * mask).sum(-1))
    draws = response.expand((7, 3))
    assert draws.state.shape == (7, 3, 5, 2) and draws.log_prob(y).shape == (7, 3)
    torch.testing.assert_close(draws.log_prob(y)[4], response.log_prob(y))
    with seeded(1):
        assert response.sample((2,)).shape == (2, 3, 5, 4)


def test_an_ar1_flow_persists_its_state_over_frames():
    """noise='flow' with ar1: draws of T(y) covary C diag(rho^lag) C^T between frames and
    C C^T + diag(psi) within one; the frames' joint density is the chain's (each frame alone
    unchanged); with rho = 0 it is the independent frames' sum; padding frames add nothing."""
    noise, y = _flow(n=4, k=2)
    ar = FlowNoise(4, 2, ar1=True)
    ar.initialize(_stats(y), "responses")
    ar.load_state_dict({**noise.state_dict(), "raw_rho": torch.tensor([2.0, -1.0])})
    ar = ar.double()
    rho = ar.rho.detach()
    loc = torch.zeros(20000, 3, 4, dtype=torch.float64)
    with seeded(0):
        z, _, _ = ar._gaussian(ar.sample_frames(loc))
    loadings, private = (x.detach() for x in ar.covariance())
    for lag in (0, 1, 2):
        cov = (z[:, 0].T @ z[:, lag]) / len(z)
        expected = loadings @ torch.diag(rho**lag) @ loadings.T + (torch.diag(private) if lag == 0 else 0)
        torch.testing.assert_close(cov, expected, atol=0.04, rtol=0.05)

    yt = torch.as_tensor(y[:12].reshape(3, 4, 4), dtype=torch.float64)  # (trials, frames, neurons)
    loc = torch.randn(3, 4, 4, dtype=torch.float64) * 0.3
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True] * 4])
    joint = ar.log_prob_frames(loc, yt, None, mask)
    independent = noise.log_prob_frames(loc, yt, None, mask)
    assert not torch.allclose(joint, independent)
    with torch.no_grad():
        ar.raw_rho.fill_(-40.0)
    torch.testing.assert_close(ar.log_prob_frames(loc, yt, None, mask), independent)
    torch.testing.assert_close(ar.log_prob_frames(loc[1:2, :2], yt[1:2, :2]), independent[1:2])
    zeros, yz = _flow(n=4, k=2, zero_inflated=True)  # exact zeros leave the chain, and score log(1 - q)
    zar = FlowNoise(4, 2, zero_inflated=True, ar1=True)
    zar.initialize(_stats(yz), "responses")
    zar.load_state_dict({**zeros.state_dict(), "raw_rho": torch.full((2,), -40.0)})
    ytz = torch.as_tensor(yz[:12].reshape(3, 4, 4), dtype=torch.float64)
    assert (ytz == 0).any()
    expected = zeros.log_prob_frames(loc, ytz, None, mask)
    torch.testing.assert_close(zar.double().log_prob_frames(loc, ytz, None, mask), expected)
    with pytest.raises(pt.DataError, match="latent_ar1"):
        FlowNoise(4, 0, ar1=True)
    with pytest.raises(pt.DataError, match="latent_ar1"):
        make_noise("independent", "poisson", 4, ar1=True)


def test_per_frame_values_repeat_per_trial_values_and_keep_the_scored_frames():
    trial = torch.arange(6.0).reshape(3, 2)  # (trials, d)
    assert torch.equal(per_frame(trial, 4), trial[:, None].expand(3, 4, 2))
    clip = torch.arange(3 * 5 * 2.0).reshape(3, 5, 2)  # a clip's five frames, its first two unscored
    assert torch.equal(per_frame(clip, 5), clip) and torch.equal(per_frame(clip, 3), clip[:, 2:])
    assert per_frame(None, 3) is None
