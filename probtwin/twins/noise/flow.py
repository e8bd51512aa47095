"""Latent-state flows (Bashiri et al. 2021): ``T(y_t) ~ Normal(l_t, C C^T + diag(psi))`` with a
learned monotone flow ``T`` per neuron, an exact density; optionally zero-inflated (calcium)
or dequantized (counts), and for responses per frame optionally with a latent state that
persists over frames (AR(1), :mod:`probtwin.twins.state_space`)."""

from __future__ import annotations

import numpy as np
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from probtwin.errors import DataError
from probtwin.twins.flows import MonotoneFlow
from probtwin.twins.likelihoods import inverse_softplus
from probtwin.twins.low_rank import conditional_latent, low_rank_log_prob
from probtwin.twins.noise.base import QUADRATURE_NODES, NoiseModel, gauss_hermite_mean, open_uniform
from probtwin.twins.state_space import ar1_cholesky, chain_log_prob, chain_posterior

__all__ = ["FlowNoise"]


class FlowNoise(NoiseModel):
    """A latent-state flow: ``T(y_t) ~ Normal(l_t, C C^T + diag(psi))``, exact density.

    Parameters
    ----------
    n_neurons, rank : int
        Population size and latent rank ``k`` (0: independent Gaussian copula).
    zero_inflated : bool
        Exact zeros with probability ``1 - q_i`` (deconvolved calcium); the flow models the
        positive responses.
    dequantize : bool
        Integer responses: the flow models ``y + u``, ``u ~ Uniform(0, 1)``; its
        log-likelihood is then a lower bound of the discrete one, and samples are rounded down.
    ar1 : bool
        Responses per frame: each latent dimension persists over a trial's frames as a
        stationary AR(1) process, ``h_f = rho h_{f-1} + sqrt(1 - rho^2) eta_f``, ``rho`` (k,)
        learned in [0, 0.999); each frame alone is the model above, the frames' joint density
        exact (a linear-Gaussian state-space model). False: a state drawn anew each frame.
    """

    gaussian_space = True
    elements = QUADRATURE_NODES
    log_likelihood_kind = "analytic"

    def __init__(
        self, n_neurons: int, rank: int, zero_inflated: bool = False, dequantize: bool = False, ar1: bool = False
    ) -> None:
        super().__init__()
        self.rank = rank
        self.zero_inflated = bool(zero_inflated)
        self.dequantize = bool(dequantize)
        self.ar1 = bool(ar1)
        if self.zero_inflated and self.dequantize:
            raise DataError("dequantize", "False with noise='zero_inflated_flow' (zeros are modelled)", "True")
        if self.ar1 and rank < 1:
            raise DataError("latent_ar1", "False with latent_rank=0 (no latent state to persist)", "True")
        if self.ar1:
            self.raw_rho = nn.Parameter(torch.zeros(rank))  # rho = 0.4995 to start
        if self.dequantize:
            self.log_likelihood_kind = "dequantized lower bound"
        self.flow = MonotoneFlow(n_neurons, log_stage=self.zero_inflated or self.dequantize)
        self.loadings = nn.Parameter(torch.zeros(n_neurons, rank))
        self.raw_private = nn.Parameter(torch.zeros(n_neurons))
        if self.zero_inflated:
            self.logit_q = nn.Parameter(torch.zeros(n_neurons))

    # ----------------------------------------------------------- set-up

    def initialize(self, stats: dict[str, np.ndarray], field: str) -> None:
        if self.zero_inflated:
            if np.any(stats["min"] < 0):
                raise DataError(field, "non-negative responses for noise='zero_inflated_flow'", "negative values")
            positive = stats["positive"] > 0
            if not np.all(positive):
                raise DataError(
                    field,
                    "at least one positive training response per neuron for the flow",
                    f"none for neurons {np.flatnonzero(~positive)[:10].tolist()}",
                )
            frac = np.clip(stats["positive"] / stats["count"], 1e-3, 1 - 1e-3)
            with torch.no_grad():
                self.logit_q.copy_(torch.as_tensor(np.log(frac / (1 - frac)), dtype=torch.float32))
            self.flow.set_range(stats["min_positive"], stats["max"])
        elif self.dequantize:
            if not stats["integer"] or np.any(stats["min"] < 0):
                raise DataError(field, "non-negative integer responses for dequantize=True", "other values")
            self.flow.set_range(np.full_like(stats["max"], 0.5), stats["max"] + 1.0)
        else:
            self.flow.set_range(stats["min"], stats["max"], center=stats["mean"], width=stats["std"])
        # in the spline's units the training range spans 1.6 K: start at a standard deviation of K / 4,
        # half of the variance private, a little shared
        var = torch.full_like(self.raw_private, (self.flow.spline.bound / 4) ** 2)
        with torch.no_grad():
            self.raw_private.copy_(inverse_softplus(0.5 * var))
            self.loadings.copy_(torch.randn_like(self.loadings) * (0.1 * var.sqrt()[:, None]))

    def location_of(self, mean: torch.Tensor) -> torch.Tensor:
        y = mean + 0.5 if self.dequantize else mean
        if self.flow.log_stage:
            y = y.clamp_min(1e-3)
        return self.flow(y)[0]

    def covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loadings, F.softplus(self.raw_private) + 1e-5

    @property
    def rho(self) -> torch.Tensor:
        """Each latent dimension's correlation from one frame to the next, (k,) (0 without AR(1))."""
        if not self.ar1:
            return self.loadings.new_zeros(self.rank)
        return 0.999 * torch.sigmoid(self.raw_rho)

    @property
    def q(self) -> torch.Tensor:
        """Probability of a non-zero response per neuron (1 without zero inflation)."""
        return torch.sigmoid(self.logit_q) if self.zero_inflated else torch.ones_like(self.raw_private)

    # ----------------------------------------------------------- densities

    def _gaussian(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``T(y)``, its log-Jacobian and the mask of modelled (non-zero) responses."""
        if not self.zero_inflated:
            z, log_det = self.flow(y)
            return z, log_det, None
        mask = y > 0
        z, log_det = self.flow(torch.where(mask, y, torch.ones_like(y)))
        return z, log_det * mask, mask

    def log_prob(
        self, loc: torch.Tensor, y: torch.Tensor, state: torch.Tensor | None = None, extra_variance=None
    ) -> torch.Tensor:
        """Log density of each trial's response vector, (..., trials), the latent state
        marginalised (``extra_variance`` (..., neurons) is added to the private variances).
        Dequantized: the density of ``y + u``, ``u ~ Uniform(0, 1)`` drawn here, so that
        responses are the counts everywhere else."""
        z, per_value, mask, loadings, private = self._scored(y, extra_variance)
        return low_rank_log_prob(z, loc, loadings, private, mask) + per_value.sum(-1)

    def _scored(self, y: torch.Tensor, extra_variance=None) -> tuple[torch.Tensor, ...]:
        """What a density of ``y`` needs: ``T(y)`` (of ``y + u`` dequantized), each value's log
        density outside the Gaussian (the log-Jacobian; with zero inflation ``log q_i`` or
        ``log (1 - q_i)``), the mask of non-zero responses, the loadings and the private
        variances (plus ``extra_variance``)."""
        if self.dequantize:
            y = y + open_uniform(y)
        loadings, private = self.covariance()
        if extra_variance is not None:
            private = private + extra_variance
        z, per_value, mask = self._gaussian(y)
        if self.zero_inflated:
            per_value = per_value + torch.where(mask, torch.log(self.q), torch.log1p(-self.q))
        return z, per_value, mask, loadings, private

    def _response(self, z: torch.Tensor) -> torch.Tensor:
        y = self.flow.inverse(z)
        return torch.floor(y) if self.dequantize else y

    def mean(self, loc: torch.Tensor) -> torch.Tensor:
        loadings, private = self.covariance()
        return self._mean(loc, private + (loadings**2).sum(-1))

    def _mean(self, loc: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        m = gauss_hermite_mean(self.flow.inverse, loc, var.expand_as(loc))
        if self.dequantize:  # E[floor(v)] ~ E[v] - 1/2
            m = (m - 0.5).clamp_min(0.0)
        return m * self.q

    def sample(self, loc: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        return self._sample_given(loc, torch.randn((*loc.shape[:-1], self.rank), dtype=loc.dtype, device=loc.device))

    def _sample_given(self, loc: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Responses at the locations given the latent states ``h`` (..., k): ``T^{-1}(l + C h +
        eps)``, zeroed with probability ``1 - q`` with zero inflation."""
        loadings, private = self.covariance()
        y = self._response(loc + h @ loadings.T + torch.randn_like(loc) * private.sqrt())
        if self.zero_inflated:
            y = y * (torch.rand_like(loc) < self.q)
        return y

    def log_predictive(self, loc, y, center, behavior):
        """The posterior of each neuron's location, moment-matched to a Normal, widens its
        private variance: ``Normal(T(y); E[l], C C^T + diag(psi + Var[l]))``, analytic."""
        spread = loc.var(0, unbiased=False) if loc.shape[0] > 1 else None
        return self.log_prob(loc.mean(0), y, extra_variance=spread), None

    def pointwise_log_likelihood(self, loc, y):
        """Each neuron's marginal: ``Normal(T(y_i); l_i, |c_i|^2 + psi_i) |T'(y_i)|`` (times
        ``q_i``, or ``1 - q_i`` for a zero, with zero inflation)."""
        if self.dequantize:
            y = y + open_uniform(y)
        loadings, private = self.covariance()
        z, log_det, mask = self._gaussian(y)
        lp = dist.Normal(loc, torch.sqrt(private + (loadings**2).sum(-1))).log_prob(z) + log_det
        if self.zero_inflated:
            lp = torch.where(mask, lp + torch.log(self.q), torch.log1p(-self.q).expand_as(lp))
        return lp

    # ----------------------------------------------------------- latent state

    def _evidence(self, y: torch.Tensor, mask=None, frame_mask=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the latent state is inferred from: ``T(y)`` (of ``y + 1/2``, the middle of the
        dequantized interval) and which responses count: non-zero (zero inflation), of the
        neurons in ``mask``, on the frames in ``frame_mask`` (None: all)."""
        if self.dequantize:
            y = y + 0.5
        z, _, observed = self._gaussian(y)
        for m in (mask, None if frame_mask is None else frame_mask[..., None]):
            if m is not None:
                observed = m if observed is None else observed & m
        return z, observed

    def latent_posterior(self, loc, y, mask=None, behavior=None):
        z, observed = self._evidence(y, mask)
        loadings, private = self.covariance()
        mean, cov = conditional_latent(z - loc, loadings, private, observed)
        if cov.dim() == 2:
            cov = cov.expand(*mean.shape[:-1], *cov.shape)
        return mean, cov

    def conditional_mean(self, loc, mean, cov):
        loadings, private = self.covariance()
        shared = torch.einsum("nk,...kl,nl->...n", loadings, cov, loadings)
        return self._mean(loc + mean @ loadings.T, private + shared)

    # ----------------------------------------------------------- a trial's frames (AR(1))

    def log_prob_frames(self, loc, y, state=None, frame_mask=None, extra_variance=None):
        """With AR(1): the exact joint density of each trial's frames (in ``frame_mask``), the
        states integrated out by the chain (:func:`~probtwin.twins.state_space.chain_log_prob`)."""
        if not self.ar1:
            return super().log_prob_frames(loc, y, state, frame_mask, extra_variance=extra_variance)
        z, per_value, nonzero, loadings, private = self._scored(y, extra_variance)
        observed = torch.ones_like(z, dtype=torch.bool) if nonzero is None else nonzero
        if frame_mask is not None:
            observed = observed & frame_mask[..., None]
        lp = chain_log_prob(z - loc, loadings, private, self.rho, observed)
        if frame_mask is not None:
            per_value = torch.where(frame_mask[..., None], per_value, torch.zeros_like(per_value))
        return lp + per_value.sum((-2, -1))

    def sample_frames(self, loc, state=None):
        """With AR(1): each trial's states drawn jointly over its frames."""
        if not self.ar1:
            return super().sample_frames(loc, state)
        eta = torch.randn((*loc.shape[:-1], self.rank), dtype=loc.dtype, device=loc.device)
        h = torch.einsum("dfg,...gd->...fd", ar1_cholesky(self.rho, loc.shape[-2]).to(loc.dtype), eta)
        return self._sample_given(loc, h)

    def log_predictive_frames(self, loc, y, center, behavior, frame_mask):
        """With AR(1): as :meth:`log_predictive`, the posterior spread of the locations widening
        the private variances, over each trial's frames jointly."""
        if not self.ar1:
            return super().log_predictive_frames(loc, y, center, behavior, frame_mask)
        spread = loc.var(0, unbiased=False) if loc.shape[0] > 1 else None
        lp = self.log_prob_frames(loc.mean(0), y, None, frame_mask, extra_variance=spread)
        return lp, torch.zeros_like(lp)

    def latent_posterior_frames(self, loc, y, mask=None, behavior=None, frame_mask=None):
        """With AR(1): each frame's state given all the trial's frames (smoothing,
        :func:`~probtwin.twins.state_space.chain_posterior`)."""
        if not self.ar1:
            return super().latent_posterior_frames(loc, y, mask, behavior, frame_mask)
        z, observed = self._evidence(y, mask, frame_mask)
        observed = torch.ones_like(z, dtype=torch.bool) if observed is None else observed.expand_as(z)
        loadings, private = self.covariance()
        return chain_posterior(z - loc, loadings, private, self.rho, observed)
