"""Low-rank Gaussians ``z ~ Normal(mu, C C^T + diag(psi))``, never expanded into N x N.

``z = mu + C h + eps`` with ``h ~ Normal(0, I_k)`` and ``eps ~ Normal(0, diag(psi))``. Every
function here costs O(N k^2) per trial (Woodbury identity and the matrix determinant lemma,
through the k x k matrix ``M = I + C^T diag(m / psi) C``), and takes an optional mask of
observed neurons, so that the same code scores a whole population, the non-zero neurons of a
zero-inflated trial, or the neurons a conditional prediction is given.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch

__all__ = ["LowRankNormal", "capacitance", "conditional_latent", "low_rank_log_prob"]


def capacitance(loadings: torch.Tensor, private: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``M = I + C^T diag(m / psi) C``.

    Parameters
    ----------
    loadings : torch.Tensor, shape (neurons, k)
    private : torch.Tensor, shape (neurons,)
        Private variances ``psi``.
    mask : torch.Tensor, shape (..., neurons), optional
        1 for observed neurons, 0 for the others (all observed when None).

    Returns
    -------
    torch.Tensor, shape (k, k) or (..., k, k)
    """
    k = loadings.shape[-1]
    eye = torch.eye(k, dtype=loadings.dtype, device=loadings.device)
    weighted = loadings / private[:, None]
    if mask is None:
        return eye + loadings.T @ weighted
    return eye + torch.einsum("...n,nk,nl->...kl", mask.to(loadings.dtype), weighted, loadings)


def conditional_latent(
    residual: torch.Tensor,
    loadings: torch.Tensor,
    private: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior of the latent state given (some of) the residuals ``r = z - mu``.

    ``h | r_O ~ Normal(M^-1 C_O^T psi_O^-1 r_O, M^-1)`` with ``M`` the capacitance of the observed
    neurons ``O``.

    Parameters
    ----------
    residual : torch.Tensor, shape (..., trials, neurons)
    loadings, private, mask : as :func:`capacitance`; mask (trials, neurons) or (neurons,)

    Returns
    -------
    mean : torch.Tensor, shape (..., trials, k)
    covariance : torch.Tensor, shape (k, k) or (trials, k, k)
    """
    m = capacitance(loadings, private, mask)
    weighted = residual / private
    if mask is not None:
        weighted = weighted * mask.to(residual.dtype)
    b = weighted @ loadings
    chol = torch.linalg.cholesky(m)
    mean = torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1)
    return mean, torch.cholesky_inverse(chol)


def low_rank_log_prob(
    z: torch.Tensor,
    loc: torch.Tensor,
    loadings: torch.Tensor,
    private: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log density of each trial's (observed) vector under ``Normal(loc, C C^T + diag(psi))``.

    Parameters
    ----------
    z, loc : torch.Tensor, shape (..., trials, neurons)
    loadings : torch.Tensor, shape (neurons, k)
    private : torch.Tensor, shape (neurons,) or (..., trials, neurons)
        Private variances (a per-trial diagonal, such as the posterior variance of the mean
        added to ``psi``, is allowed).
    mask : torch.Tensor, shape (..., trials, neurons), optional
        Score only the marginal of the observed neurons.

    Returns
    -------
    torch.Tensor, shape (..., trials)
    """
    r = z - loc
    if mask is None and private.dim() == 1:  # one capacitance shared by all trials
        weighted = r / private
        chol = torch.linalg.cholesky(capacitance(loadings, private))
        log_det = 2 * torch.log(torch.diagonal(chol)).sum() + torch.log(private).sum()
        count = r.shape[-1]
    else:
        obs = torch.ones_like(r) if mask is None else mask.to(r.dtype).expand_as(r)
        weighted = r * obs / private
        k = loadings.shape[-1]
        eye = torch.eye(k, dtype=r.dtype, device=r.device)
        chol = torch.linalg.cholesky(eye + torch.einsum("...n,nk,nl->...kl", obs / private, loadings, loadings))
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1) + (obs * torch.log(private)).sum(-1)
        count = obs.sum(-1)
    quad = (r * weighted).sum(-1)
    b = weighted @ loadings
    solved = torch.cholesky_solve(b.unsqueeze(-1), chol.expand(*b.shape[:-1], *chol.shape[-2:])).squeeze(-1)
    correction = (b * solved).sum(-1)
    return -0.5 * (count * math.log(2 * math.pi) + log_det + quad - correction)


class LowRankNormal(dist.LowRankMultivariateNormal):
    """``Normal(loc, C C^T + diag(psi))`` over an event of neurons, with the two operations the
    query engine asks of a correlated observation: each neuron's marginal, and the distribution
    given some neurons (:mod:`probtwin.infer.query`).

    Parameters
    ----------
    loc : torch.Tensor, shape (..., neurons)
    loadings : torch.Tensor, shape (neurons, k)
    private : torch.Tensor, shape (neurons,)

    Examples
    --------
    >>> d = LowRankNormal(torch.zeros(3), torch.ones(3, 1), torch.ones(3))
    >>> d.marginal().scale.tolist()  # sqrt(1 + 1)
    [1.4142135381698608, 1.4142135381698608, 1.4142135381698608]
    """

    def __init__(self, loc: torch.Tensor, loadings: torch.Tensor, private: torch.Tensor, validate_args=None):
        self.loadings, self.private = loadings, private
        super().__init__(loc, loadings, private, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> LowRankNormal:
        loc = self.loc.expand(torch.Size(batch_shape) + self.event_shape)
        return LowRankNormal(loc, self.loadings, self.private)

    def marginal(self) -> dist.Normal:
        """Each neuron's own distribution, ``Normal(loc_i, |c_i|^2 + psi_i)`` (batch (..., neurons))."""
        return dist.Normal(self.loc, torch.sqrt(self.private + (self.loadings**2).sum(-1)))

    def conditional(self, observed: torch.Tensor, values: torch.Tensor) -> dist.LowRankMultivariateNormal:
        """Every neuron given the ``observed`` ones (mask (..., neurons)) at ``values``: the latent
        state's posterior ``h | y_O ~ Normal(m, V)`` (:func:`conditional_latent`) carried to all
        neurons, ``Normal(loc + C m, C V C^T + diag(psi))``."""
        mean, cov = conditional_latent(values - self.loc, self.loadings, self.private, observed)
        factor = self.loadings @ torch.linalg.cholesky(cov)
        loc = self.loc + mean @ self.loadings.T
        factor = factor.expand(*loc.shape[:-1], *factor.shape[-2:])
        return dist.LowRankMultivariateNormal(loc, factor, self.private.expand_as(loc))
