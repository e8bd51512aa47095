import numpy as np
import pytest
import torch
from scipy import stats

from probtwin.twins.low_rank import capacitance, conditional_latent, low_rank_log_prob


@pytest.fixture
def gaussian():
    g = torch.Generator().manual_seed(0)
    n, k, t = 9, 3, 6
    c = torch.randn(n, k, generator=g, dtype=torch.float64)
    psi = torch.rand(n, generator=g, dtype=torch.float64) + 0.2
    mu = torch.randn(t, n, generator=g, dtype=torch.float64)
    z = mu + torch.randn(t, n, generator=g, dtype=torch.float64) * 2
    mask = torch.rand(t, n, generator=g) > 0.4
    mask[:, 0] = True
    return c, psi, mu, z, mask


def test_log_prob_is_the_low_rank_normal(gaussian):
    c, psi, mu, z, _ = gaussian
    expected = torch.distributions.LowRankMultivariateNormal(mu, c, psi).log_prob(z)
    np.testing.assert_allclose(low_rank_log_prob(z, mu, c, psi), expected, rtol=1e-10)
    # with leading draw axes
    np.testing.assert_allclose(low_rank_log_prob(z.expand(2, -1, -1), mu, c, psi)[1], expected, rtol=1e-10)


def test_masked_log_prob_is_the_marginal_of_the_observed_neurons(gaussian):
    c, psi, mu, z, mask = gaussian
    cov = (c @ c.T + torch.diag(psi)).numpy()
    got = low_rank_log_prob(z, mu, c, psi, mask)
    for t in range(len(z)):
        o = mask[t].numpy()
        want = stats.multivariate_normal.logpdf(z[t, o].numpy(), mu[t, o].numpy(), cov[np.ix_(o, o)])
        assert float(got[t]) == pytest.approx(want, rel=1e-10)


def test_a_per_trial_diagonal_is_added_to_psi(gaussian):
    c, psi, mu, z, _ = gaussian
    extra = torch.rand_like(z)
    for t in range(len(z)):
        want = torch.distributions.LowRankMultivariateNormal(mu[t], c, psi + extra[t]).log_prob(z[t])
        assert float(low_rank_log_prob(z, mu, c, psi + extra)[t]) == pytest.approx(float(want), rel=1e-10)


def test_conditional_latent_is_gaussian_conditioning(gaussian):
    c, psi, mu, z, mask = gaussian
    k = c.shape[1]
    mean, cov = conditional_latent(z - mu, c, psi, mask)
    for t in range(len(z)):
        o = mask[t].numpy()
        co = c.numpy()[o]
        s_zz = co @ co.T + np.diag(psi.numpy()[o])
        gain = co.T @ np.linalg.inv(s_zz)  # Cov(h, z_O) Var(z_O)^-1
        np.testing.assert_allclose(mean[t], gain @ (z - mu).numpy()[t, o], rtol=1e-8)
        np.testing.assert_allclose(cov[t], np.eye(k) - gain @ co, rtol=1e-8, atol=1e-12)
    shared_mean, shared_cov = conditional_latent(z - mu, c, psi)
    assert shared_cov.shape == (k, k)
    np.testing.assert_allclose(capacitance(c, psi), torch.linalg.inv(shared_cov), rtol=1e-8)
