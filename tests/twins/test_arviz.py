"""twin.to_arviz: groups, coordinates, and pointwise log-likelihoods against known answers."""

import arviz as az
import numpy as np
import pytest
import torch
from scipy import integrate, stats

import probtwin as pt


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.v1(n_neurons=8, n_images=160, image_size=(16, 20), seed=4, likelihood="poisson")


@pytest.fixture(scope="module")
def twin(sim):
    twin = pt.ImageTwin(sim.recording, hidden_channels=6, layers=2, state_readout=True, posterior="readout")
    twin.fit(max_epochs=2, progress=False)
    return twin


def test_inference_data_has_the_posterior_and_predictions(sim, twin):
    idata = twin.to_arviz(sim.recording, "test", num_samples=40, seed=1)
    assert set(idata.groups()) == {"posterior", "posterior_predictive", "observed_data", "log_likelihood"}
    post = idata.posterior
    assert post["weights"].dims == ("chain", "draw", "neuron", "channel")
    assert post["position"].shape == (1, 40, 8, 2)
    assert post["state_weights"].dims == ("chain", "draw", "neuron", "behavior", "channel")
    assert list(post["neuron"].values) == list(sim.recording.neuron_ids)
    test = sim.recording.split("test")
    assert np.array_equal(idata.observed_data["responses"].values, np.asarray(test.responses))
    assert list(idata.observed_data["trial"].values) == list(test.trial_index)
    assert idata.posterior_predictive["responses"].shape == (1, 40, test.n_trials, 8)
    # the draws are the twin's: the posterior mean of the weights within Monte Carlo error
    loc = twin.readouts[0].weight_loc.detach().numpy()
    assert np.allclose(post["weights"].values[0].mean(0), loc, atol=0.05)
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == test.n_trials * 8


def test_pointwise_log_likelihood_sums_to_the_log_predictive(sim, twin):
    """Independent noise: sum_i log mean_s p(y_ti | theta_s) is the twin's log predictive."""
    idata = twin.to_arviz(sim.recording, "test", num_samples=30, seed=2)
    ll = idata.log_likelihood["responses"].values[0]  # (draw, trial, neuron)
    pointwise = (np.logaddexp.reduce(ll, axis=0) - np.log(30)).sum(-1)
    assert np.allclose(pointwise, twin.log_predictive(sim.recording.split("test"), 30, seed=2), rtol=1e-4)


def test_flow_pointwise_density_is_each_neurons_marginal():
    from probtwin.twins.noise import FlowNoise

    noise = FlowNoise(5, rank=2)
    with torch.no_grad():
        noise.loadings.normal_()
    y = torch.rand(3, 5) * 3
    loc = torch.randn(2, 3, 5)
    lp = noise.pointwise_log_likelihood(loc, y)
    loadings, private = noise.covariance()
    for i in range(5):  # the joint density with every other neuron masked out
        mask = torch.zeros(3, 5, dtype=torch.bool)
        mask[:, i] = True
        z, log_det = noise.flow(y)
        from probtwin.twins.low_rank import low_rank_log_prob

        marginal = low_rank_log_prob(z, loc, loadings, private, mask) + log_det[:, i]
        assert torch.allclose(lp[..., i], marginal, atol=1e-4)


def test_latent_count_pointwise_density_integrates_the_latent_state():
    from probtwin.twins.likelihoods import Likelihood
    from probtwin.twins.noise import LatentCountNoise

    noise = LatentCountNoise(Likelihood("poisson", 3), 3, rank=2)
    with torch.no_grad():
        noise.loadings.copy_(torch.tensor([[0.5, 0.2], [0.1, -0.6], [0.3, 0.3]]))
    y = torch.tensor([[0.0, 3.0, 7.0]])
    loc = torch.tensor([[[1.5, 2.0, 4.0]]])
    lp = noise.pointwise_log_likelihood(loc, y)[0, 0]
    for i in range(3):
        s = float(noise.loadings[i].norm())
        rate = lambda u, i=i, s=s: float(loc[0, 0, i]) * np.exp(u - s**2 / 2)  # noqa: E731
        value, _ = integrate.quad(
            lambda u, i=i, s=s, rate=rate: stats.poisson.pmf(int(y[0, i]), rate(u)) * stats.norm.pdf(u, 0, s), -10, 10
        )
        assert np.isclose(float(lp[i]), np.log(value), atol=1e-4)


def test_arviz_runs_for_every_noise_model(sim):
    for noise, likelihood in (("flow", None), ("zero_inflated_flow", None), ("latent", "poisson")):
        twin = pt.ImageTwin(
            sim.recording, likelihood, noise, latent_rank=2, hidden_channels=4, layers=1, posterior="readout"
        )
        idata = twin.to_arviz(sim.recording, num_samples=10)
        assert np.all(np.isfinite(idata.log_likelihood["responses"].values))
        assert np.isfinite(az.loo(idata).elpd_loo)
