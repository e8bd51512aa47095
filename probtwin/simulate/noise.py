"""Observation models of the ground-truth simulators: draws and exact log densities.

Each model takes the true mean response ``mu`` (trials, neurons) and returns responses whose
expectation is ``mu``, the exact log density of each trial's whole response vector, and the
model's parameters.

- ``"poisson"``: ``y ~ Poisson(mu)``, independent.
- ``"zig"``: zero-inflated gamma (Wei et al. 2020): ``y = 0`` with probability ``1 - q_i``, else
  ``y ~ Gamma(k_i, rate = k_i q_i / mu)``.
- ``"normal"``: ``y ~ Normal(mu, C C^T + diag(psi))``; with rank 0, independent.
- ``"lognormal"``: a latent-state flow with ``T(y) = log(1 + y)``:
  ``log(1 + y) ~ Normal(m, C C^T + diag(psi))`` with ``m = log(1 + mu) - diag(Sigma) / 2``,
  so that ``E[y] = mu``; density ``N(T(y); m, Sigma) / prod_i (1 + y_i)``.

For the two Gaussian models, ``h_t ~ Normal(0, I_k)`` is the latent state of trial t and
``C h_t`` its shared fluctuation. ``"poisson"`` with a rank above zero is the latent-state count
model ``y ~ Poisson(mu exp(c_i . h_t - |c_i|^2 / 2))``: its marginal likelihood has no closed
form, so instead of ``log_likelihood`` it reports ``log_likelihood_given_latent``, the exact log
probability of each trial given its true latent state.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Gamma, LowRankMultivariateNormal, Poisson

from probtwin.errors import DataError

__all__ = ["LIKELIHOODS", "ar1_latent_state", "ar1_log_likelihood", "observe"]

LIKELIHOODS = ("poisson", "zig", "normal", "lognormal")
"""The observation models the simulators draw responses from."""


def _low_rank_normal(mean: np.ndarray, loadings: np.ndarray, private: np.ndarray) -> LowRankMultivariateNormal:
    return LowRankMultivariateNormal(
        torch.as_tensor(mean, dtype=torch.float64),
        torch.as_tensor(loadings, dtype=torch.float64),
        torch.as_tensor(private, dtype=torch.float64),
    )


def observe(
    mu: np.ndarray,
    likelihood: str,
    rank: int,
    rng: np.random.Generator,
    noise_scale: float = 1.0,
    latent_drive: np.ndarray | None = None,
    latent_drive_correlation: float = 0.0,
    latent: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """Draw responses around the mean and score them exactly.

    Parameters
    ----------
    mu : numpy.ndarray, shape (trials, neurons)
        True mean responses (positive).
    likelihood : {"poisson", "zig", "normal", "lognormal"}
    rank : int
        Rank of the shared latent state (Gaussian models only; 0 for independent noise).
    rng : numpy.random.Generator
    noise_scale : float
        Multiplies the noise variances of the Gaussian models (and the log-rate variance of the
        Poisson latent state).
    latent_drive : numpy.ndarray, shape (trials,), optional
        A standard-normal trial variable (such as standardised pupil size) that the first latent
        dimension follows: ``h_t1 = rho d_t + sqrt(1 - rho^2) n_t`` (still Normal(0, 1)).
    latent_drive_correlation : float in [-1, 1]
        ``rho``.
    latent : numpy.ndarray, shape (trials, rank), optional
        The latent state, each entry standard normal, given instead of drawn independently per
        trial (a state correlated across rows, such as the frames of a movie); the returned
        ``log_likelihood`` then treats the rows as independent, and the caller rescores them
        (:func:`ar1_log_likelihood`).

    Returns
    -------
    responses : numpy.ndarray, shape (trials, neurons)
    log_likelihood : numpy.ndarray, shape (trials,), or None
        Exact log density (nats) of each trial's response vector under the true model (None for
        Poisson with a latent state; see the module docstring).
    params : dict of str to numpy.ndarray
        The noise parameters (``latent_loadings``, ``private_variance``, ``latent_state``, ...).
    """
    if likelihood not in LIKELIHOODS:
        raise DataError("likelihood", f"one of {LIKELIHOODS}", repr(likelihood))
    if rank < 0:
        raise DataError("correlated_noise_rank", "a non-negative integer", str(rank))
    if rank > 0 and likelihood == "zig":
        raise DataError(
            "correlated_noise_rank",
            "0 for 'zig' (a latent state needs likelihood='poisson', 'normal' or 'lognormal')",
            f"{rank} with likelihood={likelihood!r}",
        )
    if not -1 <= latent_drive_correlation <= 1:
        raise DataError("latent_pupil_correlation", "a correlation in [-1, 1]", repr(latent_drive_correlation))
    n_trials, n_neurons = mu.shape
    mu_t = torch.as_tensor(mu, dtype=torch.float64)
    params: dict[str, np.ndarray] = {}

    def latent_state() -> np.ndarray:
        if latent is not None:
            if latent.shape != (n_trials, rank):
                raise DataError("latent", f"shape {(n_trials, rank)}", f"shape {latent.shape}")
            return latent
        h = rng.standard_normal((n_trials, rank))
        if rank and latent_drive is not None and latent_drive_correlation:
            rho = latent_drive_correlation
            h[:, 0] = rho * latent_drive + np.sqrt(1 - rho**2) * h[:, 0]
        return h

    if likelihood == "poisson" and rank > 0:
        loadings = rng.standard_normal((n_neurons, rank)) * np.sqrt(noise_scale * 0.2 / rank)
        latent = latent_state()
        rate = mu * np.exp(latent @ loadings.T - 0.5 * (loadings**2).sum(1))
        y = rng.poisson(rate).astype(np.float64)
        ll = Poisson(torch.as_tensor(rate)).log_prob(torch.as_tensor(y)).sum(-1).numpy()
        params.update(latent_loadings=loadings, latent_state=latent, log_likelihood_given_latent=ll)
        return y, None, params
    if likelihood == "poisson":
        y = rng.poisson(mu).astype(np.float64)
        ll = Poisson(mu_t).log_prob(torch.as_tensor(y)).sum(-1).numpy()
        return y, ll, params
    if likelihood == "zig":
        q = rng.uniform(0.5, 0.9, n_neurons)
        k = rng.uniform(1.5, 3.0, n_neurons)
        nonzero = rng.uniform(size=mu.shape) < q
        y = np.where(nonzero, rng.gamma(k, mu / (k * q)), 0.0)
        rate = torch.as_tensor(k * q, dtype=torch.float64) / mu_t
        k_t = torch.as_tensor(k, dtype=torch.float64).expand_as(mu_t)
        y_t = torch.as_tensor(y)
        positive = y_t > 0
        lp_pos = torch.log(torch.as_tensor(q)) + Gamma(k_t, rate).log_prob(torch.where(positive, y_t, 1.0))
        lp = torch.where(positive, lp_pos, torch.log1p(-torch.as_tensor(q)).expand_as(mu_t))
        params.update(zig_probability=q, zig_shape=k)
        return y, lp.sum(-1).numpy(), params

    # Gaussian latent-state models, in the flow's Gaussian space.
    if likelihood == "normal":
        scale = noise_scale * 0.5 * mu.mean(axis=0)  # Fano-like: noise variance ~ half the mean
    else:
        scale = np.full(n_neurons, noise_scale * 0.1)
    shared = 0.5 if rank > 0 else 0.0
    loadings = rng.standard_normal((n_neurons, max(rank, 1))) * np.sqrt(shared * scale / max(rank, 1))[:, None]
    loadings = loadings[:, :rank]
    private = (1.0 - shared) * scale
    latent = latent_state()
    eps = rng.standard_normal(mu.shape) * np.sqrt(private)
    fluctuation = latent @ loadings.T + eps
    total = private + (loadings**2).sum(axis=1)
    if likelihood == "normal":
        mean = mu
        y = mu + fluctuation
        z = y
        jacobian = 0.0
    else:
        mean = np.log1p(mu) - total / 2
        z = mean + fluctuation
        y = np.expm1(z)
        jacobian = -z.sum(axis=1)  # log |dT/dy| = -sum_i log(1 + y_i) = -sum_i z_i
    dist = _low_rank_normal(mean, loadings if rank > 0 else np.zeros((n_neurons, 1)), private)
    ll = dist.log_prob(torch.as_tensor(z)).numpy() + jacobian
    params.update(latent_loadings=loadings, private_variance=private, latent_state=latent, latent_mean=mean)
    return y, ll, params


def ar1_latent_state(trials: int, frames: int, rank: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Latent states that persist over frames: each dimension a stationary AR(1) process,
    ``h_f = rho h_{f-1} + sqrt(1 - rho^2) eta_f``, ``h_0 ~ Normal(0, 1)``; (trials, frames, rank)."""
    from scipy.signal import lfilter

    shocks = rng.standard_normal((trials, frames, rank)) * np.sqrt(1 - rho**2)
    shocks[:, 0] /= np.sqrt(1 - rho**2)
    return lfilter([1.0], [1.0, -rho], shocks, axis=1)


def ar1_log_likelihood(residual: np.ndarray, loadings: np.ndarray, private: np.ndarray, rho: float) -> np.ndarray:
    """Exact log density of each trial's frames ``r_f = C h_f + eps_f``, ``eps_f ~ Normal(0,
    diag(psi))``, ``h`` the AR(1) states of :func:`ar1_latent_state`: the Kalman filter's
    prediction errors, frame by frame.

    Parameters
    ----------
    residual : numpy.ndarray, shape (trials, frames, neurons)
    loadings : numpy.ndarray, shape (neurons, rank)
    private : numpy.ndarray, shape (neurons,)
    rho : float

    Returns
    -------
    numpy.ndarray, shape (trials,)
    """
    trials, frames, n = residual.shape
    k = loadings.shape[1]
    mean, cov = np.zeros((trials, k)), np.eye(k)
    total = np.zeros(trials)
    for f in range(frames):  # the filter's covariance is the same for every trial
        if f:
            mean, cov = rho * mean, rho**2 * cov + (1 - rho**2) * np.eye(k)
        s = loadings @ cov @ loadings.T + np.diag(private)
        chol = np.linalg.cholesky(s)
        innovation = residual[:, f] - mean @ loadings.T
        white = np.linalg.solve(chol, innovation.T)  # (n, trials)
        total += -0.5 * (n * np.log(2 * np.pi) + 2 * np.log(np.diag(chol)).sum() + (white**2).sum(0))
        gain = np.linalg.solve(s, loadings @ cov).T  # (k, n)
        mean, cov = mean + innovation @ gain.T, cov - gain @ loadings @ cov
    return total
