"""The query engine on a minimal twin, every query against its closed-form posterior predictive.

The twin (model and guide only): pixels x_t (P,), neurons i = 1..N,

    w_i ~ Normal(0, I_P)                         Bayesian linear readout of the pixels
    y_t ~ Normal(W x_t, c c^T + sigma^2 I_N)     a shared latent state (rank 1) marginalised

with the posterior q(w_i) = Normal(m_i, S_i). Under q every query has a closed form: the mean
response w_i . x ~ Normal(m_i . x, x^T S_i x), and so on.
"""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam
from scipy import stats
from torch.distributions import constraints

from probtwin.infer import query as q
from probtwin.infer import seeded
from probtwin.twins.low_rank import LowRankNormal

P, N, SIGMA = 4, 3, 0.5


class LinearGaussianTwin(PyroModule):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.loadings = PyroParam(torch.tensor([[0.8], [-0.6], [0.4]]))
        self.weight_loc = PyroParam(torch.randn(N, P, generator=g))
        tril = torch.tril(0.3 * torch.randn(N, P, P, generator=g), -1) + torch.diag_embed(torch.rand(N, P, generator=g))
        self.weight_tril = PyroParam(tril + 0.2 * torch.eye(P), constraint=constraints.lower_cholesky)

    def model(self, x, y=None):
        with pyro.plate("neurons", N, dim=-1):
            w = pyro.sample("weights", dist.Normal(torch.zeros(N, P), 1.0).to_event(1))
        with pyro.plate("trials", len(x), dim=-1):
            loc = torch.einsum("...np,tp->...tn", w, x)
            return pyro.sample("responses", LowRankNormal(loc, self.loadings, torch.full((N,), SIGMA**2)), obs=y)

    def guide(self, x, y=None):
        with pyro.plate("neurons", N, dim=-1):
            pyro.sample("weights", dist.MultivariateNormal(self.weight_loc, scale_tril=self.weight_tril))


@pytest.fixture(scope="module")
def twin():
    pyro.clear_param_store()
    t = LinearGaussianTwin()
    query = q.Query(t.model, t.guide, max_plate_nesting=1, data_plates={"trials"})
    x = torch.randn(7, P, generator=torch.Generator().manual_seed(1))
    y = torch.randn(7, N, generator=torch.Generator().manual_seed(2))
    m, tril, c = (v.detach() for v in (t.weight_loc, t.weight_tril, t.loadings))
    s = tril @ tril.transpose(-1, -2)  # S_i
    return t, query, x, y, m, s, c


def chunks(x, y=None, size=3):
    """The data in chunks of trials (the engine's draws must not depend on the chunking)."""
    return [((x[i : i + size], None if y is None else y[i : i + size]),) for i in range(0, len(x), size)]


def test_predict_draws_the_mean_response_from_its_posterior(twin):
    t, query, x, _, m, s, _ = twin
    with seeded(0), torch.no_grad():
        draws = q.predict(query, chunks(x), "responses", 40000)
    assert draws.shape == (40000, 7, N)
    mean, var = x @ m.T, torch.einsum("tp,npq,tq->tn", x, s, x)
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * float(var.max().sqrt()) / 200)
    np.testing.assert_allclose(draws.var(0), var, rtol=0.05)
    upper = torch.quantile(draws, 0.95, dim=0)
    se = var.sqrt() * math.sqrt(0.95 * 0.05 / 40000) / stats.norm.pdf(1.6449)  # of a sample quantile
    assert torch.all((upper - (mean + 1.6449 * var.sqrt())).abs() < 4 * se)
    with seeded(0), torch.no_grad():  # one parameter draw per row, whatever the chunking
        whole = q.predict(query, chunks(x, size=7), "responses", 50)
    with seeded(0), torch.no_grad():
        np.testing.assert_allclose(q.predict(query, chunks(x, size=2), "responses", 50), whole, atol=1e-6)


def test_sample_has_the_predictive_covariance(twin):
    t, query, x, _, m, s, c = twin
    with seeded(1), torch.no_grad():
        ys = q.sample(query, chunks(x[:1]), "responses", 60000)[:, 0]  # (draws, N)
    x0 = x[0]
    cov = torch.diag(torch.einsum("p,npq,q->n", x0, s, x0)) + c @ c.T + SIGMA**2 * torch.eye(N)
    np.testing.assert_allclose(ys.mean(0), m @ x0, atol=0.05)
    np.testing.assert_allclose(torch.cov(ys.T), cov, atol=0.06)


def test_pointwise_and_joint_log_likelihood(twin):
    t, query, x, y, m, s, c = twin
    with seeded(2), torch.no_grad():
        means = q.predict(query, chunks(x), "responses", 20000)
    with seeded(2), torch.no_grad():  # the same draws: each neuron's marginal, per draw, exactly
        pointwise = q.pointwise_log_prob(query, chunks(x, y), "responses", 20000)
    sd = torch.sqrt(c[:, 0] ** 2 + SIGMA**2)
    np.testing.assert_allclose(pointwise, dist.Normal(means, sd).log_prob(y), rtol=1e-5, atol=1e-5)
    with seeded(3), torch.no_grad():
        lp = q.log_predictive(query, chunks(x, y), "responses", 20000)
    with seeded(3), torch.no_grad():
        means = q.predict(query, chunks(x), "responses", 20000)
    per_draw = dist.MultivariateNormal(means, c @ c.T + SIGMA**2 * torch.eye(N)).log_prob(y).double()
    np.testing.assert_allclose(lp, torch.logsumexp(per_draw, 0) - math.log(20000), rtol=1e-5)
    density = per_draw.exp()
    se = density.std(0) / density.mean(0) / math.sqrt(20000)  # delta method, of the log of the mean
    for t_ in range(len(x)):
        cov = torch.diag(torch.einsum("p,npq,q->n", x[t_], s, x[t_])) + c @ c.T + SIGMA**2 * torch.eye(N)
        exact = stats.multivariate_normal(m @ x[t_], cov).logpdf(y[t_])
        assert float(lp[t_]) == pytest.approx(exact, abs=4 * float(se[t_]))


def test_given_conditions_on_the_observed_neurons(twin):
    t, query, x, y, m, s, c = twin
    observed = torch.tensor([True, False, True])
    with seeded(4), torch.no_grad():
        means = q.predict(query, chunks(x), "responses", 500)
    with seeded(4), torch.no_grad():
        cond = q.given(
            query, [(a, observed, y[i : i + 3]) for (a,), i in zip(chunks(x), range(0, 7, 3))], "responses", 500
        )
    ca = c[observed, 0]
    gain = ca / SIGMA**2 / (1 + (ca**2).sum() / SIGMA**2)  # E[h | y_A] = gain . (y_A - mean_A)
    h = ((y[:, observed] - means[..., observed]) * gain).sum(-1, keepdim=True)
    np.testing.assert_allclose(cond[..., ~observed], (means + h * c[:, 0])[..., ~observed], rtol=1e-4, atol=1e-5)


def test_an_intervention_replays_the_same_draws(twin):
    t, query, x, _, m, s, c = twin
    clamp = torch.ones(N, P)
    with seeded(5), torch.no_grad():
        means = q.predict(query, chunks(x), "responses", 30)
    with seeded(5), torch.no_grad():
        intact, forced = q.intervene(query, chunks(x), "responses", 30, {"weights": clamp})
    # the same draws: equal up to float32 rounding (the batched run sums in another order); other
    # draws would differ by O(1)
    np.testing.assert_allclose(intact, means, rtol=1e-5)
    np.testing.assert_allclose(forced, (x @ clamp.T).expand(30, -1, -1), rtol=1e-5)
    assert math.isfinite(float(forced.sum()))
    # several interventions at once, in a plate of their own: the same intact draws, each one's effect
    clamps = torch.stack([clamp, -2 * clamp, torch.zeros(N, P)])
    with seeded(5), torch.no_grad():
        again, stacked = q.intervene(query, chunks(x), "responses", 30, {"weights": clamps}, stacked=3)
    np.testing.assert_allclose(again, means, rtol=1e-6)
    assert stacked.shape == (3, 30, len(x), N)
    np.testing.assert_allclose(stacked, torch.einsum("knp,tp->ktn", clamps, x)[:, None].expand_as(stacked), atol=1e-6)


def test_inference_data_groups_come_from_the_same_draws(twin):
    import probtwin.arviz as ptaz

    t, query, x, y, m, s, c = twin
    with seeded(6), torch.no_grad():
        means = q.predict(query, chunks(x), "responses", 4000)
    with seeded(6), torch.no_grad():
        idata = ptaz.inference_data(
            query,
            chunks(x, y),
            "responses",
            4000,
            dims={"weights": ["neuron", "pixel"], "responses": ["trial", "neuron"]},
        )
    w = torch.as_tensor(idata.posterior["weights"].values[0])
    assert idata.posterior["weights"].dims == ("chain", "draw", "neuron", "pixel") and w.shape == (4000, N, P)
    np.testing.assert_allclose(torch.einsum("snp,tp->stn", w, x), means, atol=1e-5)  # the same draws
    np.testing.assert_allclose(w.mean(0), m, atol=0.1)
    sd = torch.sqrt(c[:, 0] ** 2 + SIGMA**2)
    expected = dist.Normal(means, sd).log_prob(y)
    np.testing.assert_allclose(idata.log_likelihood["responses"].values[0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(idata.observed_data["responses"].values, y)
    ys = torch.as_tensor(idata.posterior_predictive["responses"].values[0])
    np.testing.assert_allclose(
        (ys - means).var(0), (c @ c.T + SIGMA**2 * torch.eye(N)).diagonal().expand(7, -1), rtol=0.1
    )


def test_a_site_read_only_for_its_distribution_is_not_drawn(twin):
    t, query, x, _, m, s, c = twin
    trace, _ = q.posterior_trace(query, (x, None), 5, unsampled={"responses"})
    value = trace.nodes["responses"]["value"]
    assert value.shape == (5, 7, N) and value.stride() == (0, 0, 0)  # a placeholder, no draw
    drawn, _ = q.posterior_trace(query, (x, None), 5)
    assert drawn.nodes["responses"]["value"].std() > 0
    with seeded(7), torch.no_grad():  # the means do not depend on whether the site was drawn
        a = q.predict(query, chunks(x), "responses", 5)
    with seeded(7), torch.no_grad():
        keyed = [(0, *chunk) for chunk in chunks(x, size=7)]
        _, b = next(q.run(query, keyed, 5, {"m": q.mean("responses"), "d": q.draw("responses")}))
    np.testing.assert_allclose(a, b["m"], atol=1e-6)


def test_predictive_queries_draw_per_trial_latents_from_the_prior_not_from_the_data():
    def model(y=None):
        with pyro.plate("trials", 4, dim=-1):
            h = pyro.sample("h", dist.Normal(torch.zeros(4), 1.0))
            return pyro.sample("y", dist.Normal(h, 0.1), obs=y)

    def guide(y=None):  # an amortized guide that has seen the data
        if y is not None:
            with pyro.plate("trials", 4, dim=-1):
                pyro.sample("h", dist.Normal(y, 0.01))

    query = q.Query(model, guide, max_plate_nesting=1, data_plates={"trials"})
    y = torch.tensor([3.0, -2.0, 0.5, 1.0])
    with seeded(0), torch.no_grad():
        replicated = q.sample(query, [((y,),)], "y", 20000)
        smoothed = next(q.run(query, [(0, (y,))], 20000, {"d": q.draw("y")}, local="guide"))[1]["d"]
        lp = q.log_predictive(query, [((y,),)], "y", 20000)
    np.testing.assert_allclose(replicated.var(0), 1.01, rtol=0.05)  # the prior predictive of a new trial
    np.testing.assert_allclose(smoothed.mean(0), y, atol=0.01)  # given the data, the latent is known
    np.testing.assert_allclose(lp, dist.Normal(0.0, math.sqrt(1.01)).log_prob(y), atol=0.05)


def test_shared_draws_their_subsets_and_the_posterior_means(twin):
    t, query, x, _, m, s, c = twin
    with seeded(8), torch.no_grad():
        draws = q.posterior_draws(query, (x,), 10)
        keyed = ((slice(i, i + 3), *chunk) for i, chunk in zip(range(0, len(x), 3), chunks(x)))
        full = q.collect(query, keyed, 10, q.mean("responses"), len(x), global_draws=draws)
        index = torch.tensor([3, 3, 7])
        sub = q.collect(
            query, [(slice(0, 7), (x,))], 3, q.mean("responses"), len(x), global_draws=q.take_draws(query, draws, index)
        )
        point = q.collect(
            query,
            [(slice(0, 7), (x,))],
            1,
            q.mean("responses"),
            len(x),
            global_draws=q.posterior_draws(query, (x,), None),
        )
    assert q.num_draws(query, draws) == 10
    np.testing.assert_allclose(sub, full[index.numpy()], rtol=1e-6)
    w = draws.nodes["weights"]["value"]  # (10, N, P): the responses' means are these draws' readouts
    np.testing.assert_allclose(full, torch.einsum("snp,tp->stn", w, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(point[0], x @ m.T, rtol=1e-5, atol=1e-6)  # the guide's means


class Holder(torch.nn.Module):
    """A plain module around the twin whose ``forward`` runs a thunk: ``functional_call`` swaps
    the twin's parameters (a PyroModule called itself would read Pyro's parameter store)."""

    def __init__(self, twin):
        super().__init__()
        self.twin = twin

    def forward(self, thunk):
        return thunk()


@pytest.fixture(scope="module")
def mixture():
    """A posterior mixing two components: the twin's parameters, and the same with every
    readout mean moved by +5."""
    t = LinearGaussianTwin()
    holder = Holder(t)
    own = {name: p.detach().clone() for name, p in holder.named_parameters()}
    moved = dict(own, **{"twin.weight_loc_unconstrained": own["twin.weight_loc_unconstrained"] + 5.0})
    components = [lambda thunk, s=s: torch.func.functional_call(holder, s, (thunk,)) for s in (own, moved)]
    query = q.Query(t.model, t.guide, max_plate_nesting=1, data_plates={"trials"}, components=components)
    x = torch.randn(7, P, generator=torch.Generator().manual_seed(1))
    return t, query, x, t.weight_loc.detach()


def test_a_mixture_posterior_stratifies_its_draws_over_the_components(mixture):
    t, query, x, m = mixture
    with seeded(0), torch.no_grad():
        draws = q.predict(query, chunks(x), "responses", 4001)  # 2001 from the first, 2000 from the second
    assert draws.shape == (4001, 7, N)
    for part, loc in ((draws[:2001], m), (draws[2001:], m + 5.0)):
        np.testing.assert_allclose(part.mean(0), x @ loc.T, atol=0.15)
    with seeded(0), torch.no_grad():  # the same draws whatever the chunking
        whole = q.predict(query, chunks(x, size=7), "responses", 4001)
    np.testing.assert_allclose(whole, draws, rtol=1e-5, atol=1e-5)


def test_mixture_draws_their_subsets_means_and_interventions(mixture):
    t, query, x, m = mixture
    with seeded(3), torch.no_grad():
        draws = q.posterior_draws(query, (x,), 5)
        full = q.collect(query, [(slice(0, 7), (x,))], 5, q.mean("responses"), len(x), global_draws=draws)
        index = torch.tensor([1, 3, 4])  # one of the first component's three draws, two of the second's two
        subset = q.take_draws(query, draws, index)
        sub = q.collect(query, [(slice(0, 7), (x,))], 3, q.mean("responses"), len(x), global_draws=subset)
        point = q.posterior_draws(query, (x,), None)
        means = q.collect(query, [(slice(0, 7), (x,))], 1, q.mean("responses"), len(x), global_draws=point)
    with seeded(4), torch.no_grad():
        intact, forced = q.intervene(query, chunks(x), "responses", 5, {"weights": torch.zeros(N, P)})
    with seeded(4), torch.no_grad():
        predicted = q.predict(query, chunks(x), "responses", 5)
    assert isinstance(draws, q.MixtureDraws) and q.num_draws(query, draws) == 5
    assert [q.num_draws(q.Query(t.model, t.guide, 1, {"trials"}), d) for d in draws] == [3, 2]
    assert [q.num_draws(q.Query(t.model, t.guide, 1, {"trials"}), d) for d in subset] == [1, 2]
    np.testing.assert_allclose(sub, full[index.numpy()], rtol=1e-6)
    np.testing.assert_allclose(means, np.stack([x @ m.T, x @ (m + 5).T]), rtol=1e-5, atol=1e-5)
    assert intact.shape == forced.shape == (5, 7, N) and torch.all(forced == 0)
    np.testing.assert_allclose(intact, predicted, rtol=1e-6)  # each component's own draws, intact
    with pytest.raises(ValueError, match="increasing"):
        q.take_draws(query, draws, torch.tensor([3, 1]))
    with pytest.raises(ValueError, match="over_components"):
        q.posterior_trace(query, (x,), 4)


def three_fits(combination):
    """Three components, the readout means moved by 0, +5 and +15: independent fits that
    disagree far more than each one's posterior spreads."""
    t = LinearGaussianTwin()
    holder = Holder(t)
    own = {name: p.detach().clone() for name, p in holder.named_parameters()}
    key = "twin.weight_loc_unconstrained"
    states = [dict(own, **{key: own[key] + shift}) for shift in (0.0, 5.0, 15.0)]
    components = [lambda thunk, s=s: torch.func.functional_call(holder, s, (thunk,)) for s in states]
    return t, q.Query(t.model, t.guide, 1, {"trials"}, components, combination)


def test_a_student_combination_draws_the_t_predictive_of_one_more_fit():
    from probtwin.twins.posterior import member_quantile

    t, query = three_fits("student")
    x = torch.randn(7, P, generator=torch.Generator().manual_seed(1))
    m, tril = t.weight_loc.detach(), t.weight_tril.detach()
    # each fit's mean response is Normal(x . m_c, x^T S x): the combination's quantiles in closed form
    loc = torch.stack([x @ (m + shift).T for shift in (0.0, 5.0, 15.0)])  # (3, trials, neurons)
    scale = torch.einsum("tp,npq,tq->tn", x, tril @ tril.transpose(-1, -2), x).sqrt().expand_as(loc)
    with seeded(0), torch.no_grad():
        draws = q.predict(query, chunks(x), "responses", 30000)
    for level in (0.05, 0.25, 0.75, 0.95):
        below = (draws <= member_quantile(loc, scale, level, "student")).float().mean(0)
        np.testing.assert_allclose(below, level, atol=0.01)
    mixed = (draws <= member_quantile(loc, scale, 0.95, "mixture")).float().mean(0)
    assert float(mixed.median()) < 0.85  # the mixture's 95% point lies well inside the t predictive
    with seeded(0), torch.no_grad():  # the same weights in every chunk: the same draws whatever the chunking
        whole = q.predict(query, chunks(x, size=7), "responses", 30000)
    with seeded(0), torch.no_grad():
        intact, _ = q.intervene(query, chunks(x), "responses", 30000, {"weights": torch.zeros(N, P)})
    np.testing.assert_allclose(whole, draws, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(intact, draws, rtol=1e-5, atol=1e-4)  # interventions combine the same draws
    with seeded(0), torch.no_grad():
        noisy = q.sample(query, chunks(x), "responses", 300)  # observation draws stay each fit's own
    assert abs(float(noisy[:100].mean()) - float(loc[0].mean())) < 0.5
    with pytest.raises(ValueError, match="at least 3 draws"), torch.no_grad():
        q.predict(query, chunks(x), "responses", 2)
    with pytest.raises(ValueError, match="combination"):
        q.Query(t.model, t.guide, 1, {"trials"}, (), "t")


def test_combining_blocks_of_draws_moves_each_block_by_its_weighted_distance_from_the_mean():
    from probtwin.infer.mixture import combine_blocks, stratified_counts

    assert stratified_counts(7, 3) == [3, 2, 2] and sum(stratified_counts(200, 3)) == 200
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [10.0, 0.0], [20.0, 4.0], [30.0, 8.0]])  # (draws, 2): blocks 2, 3
    means = torch.tensor([[2.0, 2.0], [20.0, 4.0]])
    grand = means.mean(0)  # (11, 3)
    weights = torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 0.0], [-2.0, 0.0], [0.5, 0.5]])
    out = combine_blocks(x, [2, 3], weights)
    block = torch.tensor([0, 0, 1, 1, 1])
    expected = grand + weights @ (means - grand) + (x - means[block])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out[0], grand + x[0] - means[0])  # no weight: the member's draw about the mean
    torch.testing.assert_close(combine_blocks(x.T, [2, 3], weights, dim=1), expected.T)
    with pytest.raises(ValueError, match="every one needs draws"):
        combine_blocks(x, [5, 0], weights)
    with pytest.raises(ValueError, match="weights"):
        combine_blocks(x, [2, 3], weights[:4])


def test_student_quantiles_cover_one_more_fit_at_their_level():
    """K fits and the truth drawn alike (exchangeable), element by element: the t predictive's
    central intervals cover the truth at their level; a mixture's, at (K - 1) / (K + 1)."""
    from probtwin.twins.posterior import member_quantile

    g = torch.Generator().manual_seed(0)
    centre, spread = torch.randn(5000, generator=g) * 10, torch.rand(5000, generator=g) * 3 + 0.1
    values = centre + spread * torch.randn(4, 5000, generator=g)  # three fits, then the truth
    fits, truth, within = values[:3], values[3], torch.full((3, 5000), 1e-4)
    for level in (0.5, 0.9):
        lo = member_quantile(fits, within, (1 - level) / 2, "student")
        hi = member_quantile(fits, within, (1 + level) / 2, "student")
        assert abs(float(((lo <= truth) & (truth <= hi)).float().mean()) - level) < 0.02  # 3 standard errors
    lo, hi = (member_quantile(fits, within, p, "mixture") for p in (0.05, 0.95))
    assert abs(float(((lo <= truth) & (truth <= hi)).float().mean()) - 0.5) < 0.025
