"""A latent state that persists over frames: each latent dimension a stationary AR(1) process,
seen through a low-rank loading matrix with private noise per neuron (a linear-Gaussian
state-space model).

For one trial of frames ``f = 0 .. F-1``::

    h_0 ~ Normal(0, I_k),    h_f = rho * h_{f-1} + sqrt(1 - rho^2) * eta_f,    eta_f ~ Normal(0, I_k)
    z_f = l_f + C h_f + eps_f,                                                  eps_f ~ Normal(0, diag(psi_f))

with ``rho`` (k,) in [0, 1). Every frame's state is Normal(0, I_k), so each frame on its own is
the independent-frames model ``Normal(l_f, C C^T + diag(psi))``: only the joint law of a trial's
frames changes, their state correlated ``rho^|f - g|`` apart.

The log density of a trial's frames is exact. Each frame's observation is a Gaussian factor of
``h_f`` in information form: precision ``C^T diag(w_f) C``, information ``C^T (w_f r_f)`` with
``w_f = m_f / psi_f`` and ``r_f = z_f - l_f``, ``m_f`` the neurons observed on that frame (0 on
a padding frame: no factor). The factors join the transitions and the chain is contracted by a
parallel scan over frames (:mod:`pyro.ops.gaussian`), in ``log2(F)`` vectorised steps. The
posterior of all the states given the frames is the Gaussian of precision ``Q^{-1} +
blockdiag(C^T diag(w_f) C)``, ``Q^{-1}`` the AR(1) prior's tridiagonal precision, solved
densely per trial ((F k)^2 memory).
"""

from __future__ import annotations

import math

import torch
from pyro.ops.gaussian import (
    Gaussian,
    gaussian_tensordot,
    matrix_and_mvn_to_gaussian,
    mvn_to_gaussian,
    sequential_gaussian_tensordot,
)
from torch.distributions import MultivariateNormal

__all__ = ["SMOOTHING_ELEMENTS", "ar1_cholesky", "chain_log_prob", "chain_posterior", "observation_factors"]

SMOOTHING_ELEMENTS = 2**26
"""Floats the dense smoothing of :func:`chain_posterior` holds at once (trials are solved in
chunks of at most this)."""


def ar1_cholesky(rho: torch.Tensor, frames: int) -> torch.Tensor:
    """Lower Cholesky factor of each dimension's AR(1) covariance ``rho^|f - g|`` over frames:
    ``h = L eta``, ``eta ~ Normal(0, I)``, draws the states of a trial.

    Parameters
    ----------
    rho : torch.Tensor, shape (k,)
    frames : int

    Returns
    -------
    torch.Tensor, shape (k, frames, frames)
        ``L[d, f, g] = rho_d^(f - g) s_g`` for ``g <= f``, ``s_0 = 1``, ``s_g = sqrt(1 - rho_d^2)``.
    """
    f = torch.arange(frames, device=rho.device)
    lag = f[:, None] - f[None, :]
    power = rho[:, None, None] ** lag.clamp_min(0).to(rho.dtype)
    scale = torch.sqrt(1 - rho**2)[:, None].expand(-1, frames).clone()
    scale[:, 0] = 1.0
    return torch.where(lag >= 0, power, torch.zeros_like(power)) * scale[:, None, :]


def observation_factors(
    residual: torch.Tensor, loadings: torch.Tensor, private: torch.Tensor, observed: torch.Tensor
) -> Gaussian:
    """Each frame's ``log Normal(r_f; C h, diag(psi_f))`` over its observed neurons, as a
    Gaussian factor of ``h_f``.

    Parameters
    ----------
    residual : torch.Tensor, shape (..., frames, neurons)
        ``r_f = z_f - l_f``.
    loadings : torch.Tensor, shape (neurons, k)
    private : torch.Tensor, shape (neurons,) or (..., frames, neurons)
    observed : torch.Tensor, shape (..., frames, neurons)
        1 where a neuron is observed on a frame, 0 elsewhere.

    Returns
    -------
    Gaussian
        Batch (..., frames), dimension k.
    """
    obs = observed.to(residual.dtype).expand_as(residual)
    weight = obs / private
    r = torch.where(obs > 0, residual, torch.zeros_like(residual))  # nothing unobserved reaches the factor
    precision = torch.einsum("...n,nk,nl->...kl", weight, loadings, loadings)
    info = (weight * r) @ loadings
    log_normalizer = -0.5 * ((weight * r**2).sum(-1) + (obs * (math.log(2 * math.pi) + torch.log(private))).sum(-1))
    return Gaussian(log_normalizer, info, precision)


def _prior(rho: torch.Tensor) -> tuple[Gaussian, Gaussian]:
    """The first state's factor Normal(0, I_k) and the transition's over (h_{f-1}, h_f)."""
    k = rho.shape[0]
    eye = torch.eye(k, dtype=rho.dtype, device=rho.device)
    zeros = rho.new_zeros(k)
    init = mvn_to_gaussian(MultivariateNormal(zeros, eye))
    trans = matrix_and_mvn_to_gaussian(torch.diag(rho), MultivariateNormal(zeros, torch.diag(1 - rho**2)))
    return init, trans


def chain_log_prob(
    residual: torch.Tensor,
    loadings: torch.Tensor,
    private: torch.Tensor,
    rho: torch.Tensor,
    observed: torch.Tensor,
) -> torch.Tensor:
    """Log density of each trial's observed residuals, the states integrated out exactly.

    Parameters
    ----------
    residual, loadings, private, observed
        As :func:`observation_factors`.
    rho : torch.Tensor, shape (k,)

    Returns
    -------
    torch.Tensor, shape (...,)
        Nats; frames with nothing observed (padding) add nothing.
    """
    k = loadings.shape[-1]
    factors = observation_factors(residual, loadings, private, observed)
    init, trans = _prior(rho)
    first = init + factors[..., 0]
    if residual.shape[-2] == 1:
        return first.event_logsumexp()
    steps = trans + factors[..., 1:].event_pad(left=k)  # batch (..., frames - 1), over (h_{f-1}, h_f)
    chain = sequential_gaussian_tensordot(steps.expand(steps.batch_shape))
    return gaussian_tensordot(first, chain, dims=k).event_logsumexp()


def chain_posterior(
    residual: torch.Tensor,
    loadings: torch.Tensor,
    private: torch.Tensor,
    rho: torch.Tensor,
    observed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior of every frame's state given a trial's observed residuals (smoothing).

    Parameters
    ----------
    residual, loadings, private, observed, rho
        As :func:`chain_log_prob`.

    Returns
    -------
    mean : torch.Tensor, shape (..., frames, k)
    cov : torch.Tensor, shape (..., frames, k, k)
        Each frame's posterior covariance (the diagonal blocks of the joint one).
    """
    frames, k = residual.shape[-2], loadings.shape[-1]
    n = max(1, SMOOTHING_ELEMENTS // (4 * (frames * k) ** 2))  # trials a chunk: a dense solve holds ~4 (F k)^2
    shape = torch.broadcast_shapes(residual.shape, observed.shape, private.shape)
    if math.prod(shape[:-2]) > n:  # trials in chunks, memory bounded
        flat = [x.expand(shape).reshape(-1, frames, shape[-1]) for x in (residual, observed, private)]
        r, m, psi = flat
        parts = [
            chain_posterior(r[i : i + n], loadings, psi[i : i + n], rho, m[i : i + n]) for i in range(0, len(r), n)
        ]
        mean, cov = (torch.cat(p, 0).reshape(*shape[:-2], *p[0].shape[1:]) for p in zip(*parts))
        return mean, cov
    factors = observation_factors(residual, loadings, private, observed)
    # the AR(1) prior's precision over a trial's states, (frames, k, frames, k): per dimension the
    # inverse of L L^T (tridiagonal), independent across dimensions
    inverse = torch.cholesky_inverse(ar1_cholesky(rho, frames))  # (k, frames, frames)
    prior = torch.einsum("dfg,de->fdge", inverse, torch.diag_embed(torch.ones_like(rho)))
    eye_f = torch.eye(frames, dtype=rho.dtype, device=rho.device)
    blocks = torch.einsum("fg,...fde->...fdge", eye_f, factors.precision)
    precision = (prior + blocks).reshape(*blocks.shape[:-4], frames * k, frames * k)
    chol = torch.linalg.cholesky(precision)
    mean = torch.cholesky_solve(factors.info_vec.flatten(-2).unsqueeze(-1), chol).squeeze(-1)
    joint = torch.cholesky_inverse(chol).unflatten(-1, (frames, k)).unflatten(-3, (frames, k))
    cov = torch.diagonal(joint, dim1=-4, dim2=-2).movedim(-1, -3)  # (..., frames, k, k)
    return mean.unflatten(-1, (frames, k)), cov
