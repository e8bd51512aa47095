"""The AR(1) latent state over frames: its exact density and posterior against the dense
Gaussian of a trial's frames, and an independent Kalman filter."""

import numpy as np
import pytest
import torch

from probtwin.simulate.noise import ar1_latent_state, ar1_log_likelihood
from probtwin.twins.state_space import ar1_cholesky, chain_log_prob, chain_posterior

F, N, K = 6, 5, 2


@pytest.fixture
def model():
    g = torch.Generator().manual_seed(0)
    loadings = torch.randn(N, K, generator=g, dtype=torch.float64)
    private = torch.rand(N, generator=g, dtype=torch.float64) + 0.3
    rho = torch.tensor([0.85, 0.3], dtype=torch.float64)
    residual = torch.randn(3, F, N, generator=g, dtype=torch.float64)
    observed = torch.rand(3, F, N, generator=g) > 0.3
    observed[1, 4:] = False  # a trial of four frames (padding)
    return loadings, private, rho, residual, observed


def _dense(loadings, private, rho):
    """The covariance of a trial's frames, (F N, F N), and of its states, (F K, F K)."""
    lag = torch.arange(F)[:, None] - torch.arange(F)[None, :]
    corr = rho[:, None, None] ** lag.abs()  # (K, F, F)
    states = torch.einsum("dfg,de->fdge", corr, torch.eye(K, dtype=rho.dtype)).reshape(F * K, F * K)
    frames = torch.einsum("nd,dfg,md->fngm", loadings, corr, loadings)
    frames = frames + torch.einsum("fg,nm,n->fngm", torch.eye(F), torch.eye(N), private)
    return frames.reshape(F * N, F * N), states


def test_the_cholesky_factor_gives_the_ar1_correlations():
    rho = torch.tensor([0.9, 0.2, 0.0], dtype=torch.float64)
    chol = ar1_cholesky(rho, 7)
    lag = (torch.arange(7)[:, None] - torch.arange(7)[None, :]).abs()
    torch.testing.assert_close(chol @ chol.transpose(-1, -2), rho[:, None, None] ** lag)
    assert torch.all(torch.triu(chol, 1) == 0)


def test_the_chains_density_is_the_dense_gaussian_of_the_observed_values(model):
    loadings, private, rho, residual, observed = model
    cov, _ = _dense(loadings, private, rho)
    lp = chain_log_prob(residual, loadings, private, rho, observed)
    for t in range(3):
        seen = observed[t].reshape(-1)
        normal = torch.distributions.MultivariateNormal(
            torch.zeros(int(seen.sum()), dtype=cov.dtype), cov[seen][:, seen]
        )
        torch.testing.assert_close(lp[t], normal.log_prob(residual[t].reshape(-1)[seen]))
    # every neuron seen: the Kalman filter of the simulator (frame by frame, in numpy) agrees
    everything = torch.ones_like(observed)
    kalman = ar1_log_likelihood(residual.numpy(), loadings.numpy(), private.numpy(), 0.6)
    chain = chain_log_prob(residual, loadings, private, torch.full((K,), 0.6, dtype=torch.float64), everything)
    np.testing.assert_allclose(chain.numpy(), kalman, rtol=1e-10)
    # one frame: the independent-frames model Normal(0, C C^T + diag(psi))
    one = torch.distributions.MultivariateNormal(
        torch.zeros(N, dtype=cov.dtype), loadings @ loadings.T + torch.diag(private)
    )
    torch.testing.assert_close(
        chain_log_prob(residual[:, :1], loadings, private, rho, everything[:, :1]), one.log_prob(residual[:, 0])
    )


def test_the_smoothed_states_are_the_dense_gaussian_conditional(model):
    loadings, private, rho, residual, observed = model
    cov, states = _dense(loadings, private, rho)
    mean, each = chain_posterior(residual, loadings, private, rho, observed)
    assert mean.shape == (3, F, K) and each.shape == (3, F, K, K)
    design = torch.einsum("fg,nd->fngd", torch.eye(F, dtype=rho.dtype), loadings).reshape(F * N, F * K)
    for t in range(3):
        seen = observed[t].reshape(-1)
        a, s = design[seen], cov[seen][:, seen]
        expected = states @ a.T @ torch.linalg.solve(s, residual[t].reshape(-1)[seen])
        joint = states - states @ a.T @ torch.linalg.solve(s, a @ states)
        torch.testing.assert_close(mean[t], expected.reshape(F, K))
        blocks = torch.stack([joint[f * K : (f + 1) * K, f * K : (f + 1) * K] for f in range(F)])
        torch.testing.assert_close(each[t], blocks)


def test_smoothing_in_chunks_of_trials_is_the_same(model, monkeypatch):
    from probtwin.twins import state_space

    loadings, private, rho, residual, observed = model
    draws = residual.expand(4, *residual.shape)  # a leading axis of draws over the trials
    whole = chain_posterior(draws, loadings, private, rho, observed)
    monkeypatch.setattr(state_space, "SMOOTHING_ELEMENTS", 4 * (F * K) ** 2 * 5)  # five trials a chunk
    chunked = chain_posterior(draws, loadings, private, rho, observed)
    for a, b in zip(whole, chunked, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)


def test_simulated_states_are_stationary_ar1():
    h = ar1_latent_state(20000, 4, 2, 0.7, np.random.default_rng(0))
    np.testing.assert_allclose(h.std(0), 1.0, atol=0.03)
    for lag in (1, 2):
        r = np.corrcoef(h[:, 0, 1], h[:, lag, 1])[0, 1]
        assert r == pytest.approx(0.7**lag, abs=0.03)
