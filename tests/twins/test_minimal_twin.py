"""A minimal twin, model and guide only, answers every query of the twins' API, each checked
against its closed-form posterior predictive.

The twin: a Bayesian linear readout of the (standardised) pixels x_t,
``w_i ~ Normal(0, I)``, ``y_ti ~ Normal(w_i . x_t, sigma_i^2)``, with the posterior fixed at
``q(w_i) = Normal(m_i, S_i)``. Then ``w_i . x ~ Normal(m_i . x, x^T S_i x)`` and
``y_ti ~ Normal(m_i . x, x^T S_i x + sigma_i^2)`` under the posterior predictive.
"""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

import probtwin as pt
from probtwin.arviz import ArvizExport
from probtwin.twins.base import Twin
from probtwin.twins.evaluation import Evaluation
from probtwin.twins.queries import PosteriorQueries

N, H, W = 4, 2, 3  # neurons, image height and width: P = 6 pixels


# ----------------------------------------------------------------- the whole twin: 25 lines
class LinearGaussianTwin(PosteriorQueries, Evaluation, ArvizExport, Twin):
    """Bayesian linear readout of pixels, ``y_ti ~ Normal(w_i . x_t, sigma_i^2)``."""

    def __init__(self, rec, weight_mean, weight_tril):
        super().__init__(rec, "normal", {"noise": "independent"})
        self.register_buffer("weight_mean", weight_mean)  # q(w_i) = Normal(m_i, L_i L_i^T)
        self.register_buffer("weight_tril", weight_tril)

    def model(self, batch):
        k, x = batch["session"], batch["stimuli"].flatten(1)
        n = self.specs[k].n_neurons
        with pyro.plate(f"neurons_{k}", n, dim=-1):
            w = pyro.sample(f"weights_{k}", dist.Normal(torch.zeros(n, x.shape[1]), 1.0).to_event(1))
        self.noise[k].observe(f"responses_{k}", torch.einsum("...np,tp->...tn", w, x), batch)

    def guide(self, batch):
        k = batch["session"]
        with pyro.plate(f"neurons_{k}", self.specs[k].n_neurons, dim=-1):
            pyro.sample(f"weights_{k}", dist.MultivariateNormal(self.weight_mean, scale_tril=self.weight_tril))


# -----------------------------------------------------------------


@pytest.fixture(scope="module")
def setting():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(N, H * W, generator=g)
    tril = torch.tril(0.3 * torch.randn(N, H * W, H * W, generator=g), -1) + 0.5 * torch.eye(H * W)
    images = np.random.default_rng(1).normal(size=(400, 1, H, W)).astype(np.float32)
    responses = np.random.default_rng(2).normal(size=(400, N)).astype(np.float32)  # replaced below
    twin = LinearGaussianTwin(pt.Recording(images, responses, name="toy"), m, tril)
    x = twin._batch(0, {"stimuli": images})["stimuli"].flatten(1)  # the standardised pixels
    sigma = twin.noise[0].likelihood.scale.detach()
    s = tril @ tril.transpose(-1, -2)
    mean, var = x @ m.T, torch.einsum("tp,npq,tq->tn", x, s, x)
    with pt.infer.seeded(3):  # test responses drawn from the posterior predictive itself
        y = mean + torch.sqrt(var + sigma**2) * torch.randn(mean.shape)
    tiers = np.array(["train"] * 200 + ["test"] * 200)  # score the second half
    rec = pt.Recording(images, y.numpy(), tiers=tiers, name="toy")
    return twin, rec, images, x, mean, var, sigma


def test_predict_and_sample_have_the_posterior_predictive_moments(setting):
    twin, rec, images, x, mean, var, sigma = setting
    pred = twin.predict(images[:5], num_samples=40000, seed=0)
    np.testing.assert_allclose(pred.mean, mean[:5], atol=float(4 * var.max().sqrt() / 200))
    np.testing.assert_allclose(pred.samples.var(0), var[:5], rtol=0.05)
    upper = mean[:5] + 1.6449 * var[:5].sqrt()
    se = var[:5].sqrt() * math.sqrt(0.95 * 0.05 / 40000) / stats.norm.pdf(1.6449)
    assert np.all(np.abs(pred.quantile(0.95) - upper.numpy()) < 4 * se.numpy())
    draws = twin.sample(images[:5], num_samples=40000, seed=1)
    np.testing.assert_allclose(draws.var(0), var[:5] + sigma**2, rtol=0.05)


def test_evaluate_scores_the_closed_form_predictive(setting):
    twin, rec, images, x, mean, var, sigma = setting
    scores = twin.evaluate(rec, tier="test", num_samples=4000, seed=0)
    y = torch.as_tensor(np.asarray(rec.split("test").responses))
    exact = dist.Normal(mean[200:], torch.sqrt(var[200:] + sigma**2)).log_prob(y).sum() / y.numel() / math.log(2)
    assert scores["log_likelihood_bits"] == pytest.approx(float(exact), abs=0.01)
    assert scores["coverage_90"] == pytest.approx(0.9, abs=0.03)  # the data are the predictive's own
    assert scores["single_trial_correlation"] > 0.3


def test_to_arviz_holds_the_same_draws_in_every_group(setting):
    twin, rec, images, x, mean, var, sigma = setting
    idata = twin.to_arviz(rec, tier="test", num_samples=300, seed=2)
    w = torch.as_tensor(idata.posterior["weights"].values[0])  # (draws, neurons, pixels)
    assert idata.posterior["weights"].dims[:3] == ("chain", "draw", "neuron") and w.shape == (300, N, H * W)
    y = torch.as_tensor(np.asarray(rec.split("test").responses))
    expected = dist.Normal(torch.einsum("snp,tp->stn", w, x[200:]), sigma).log_prob(y)
    np.testing.assert_allclose(idata.log_likelihood["responses"].values[0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(idata.observed_data["responses"].values, y.numpy())


def test_given_and_an_intervention(setting):
    twin, rec, images, x, mean, var, sigma = setting
    alone = twin.predict(images[:6], num_samples=50, seed=4)
    given = twin.predict(images[:6], num_samples=50, seed=4, given=(np.array([0, 2]), np.zeros((6, 2))))
    np.testing.assert_allclose(given.samples, alone.samples[..., [1, 3]], rtol=1e-6)  # independent: no change
    clamp = np.ones((N, H * W), np.float32)
    intact, forced = twin.intervene(images[:6], {"weights_0": clamp}, num_samples=50, seed=4)
    np.testing.assert_allclose(intact.samples, alone.samples, rtol=1e-6)  # the same posterior draws
    np.testing.assert_allclose(forced.samples, np.broadcast_to(x[:6].numpy() @ clamp.T, (50, 6, N)), rtol=1e-5)
