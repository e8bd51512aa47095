"""Noise models: how a population's responses vary around the twin's prediction, trial by trial.

A twin computes a *location* per trial and neuron from the stimulus, behaviour and gaze; the
noise model turns locations into the distribution of the whole population's response:

================================  ==========================================================
``noise``                         responses given the locations ``l_t`` (one trial)
================================  ==========================================================
``"independent"``                 ``y_ti ~ likelihood(l_ti)`` independently; ``l`` is the mean
``"flow"``                        ``T(y_t) ~ Normal(l_t, C C^T + diag(psi))``, ``T`` a learned
                                  monotone flow per neuron (Bashiri et al. 2021); ``l`` lives
                                  in the flow's Gaussian space
``"zero_inflated_flow"``          ``y_ti = 0`` with probability ``1 - q_i``, else the flow; the
                                  non-zero neurons' ``T(y)`` are jointly Gaussian as above
``"latent"``                      ``h_t ~ Normal(0, I_k)``, ``y_ti ~ likelihood(l_ti
                                  exp(c_i . h_t - |c_i|^2 / 2))`` (Poisson or negative
                                  binomial); ``l`` is the mean
================================  ==========================================================

In the flows ``z_t = T(y_t) = l_t + C h_t + eps_t`` with ``h_t ~ Normal(0, I_k)`` the trial's
*latent state* and ``eps_t ~ Normal(0, diag(psi))``: marginalising ``h_t`` gives the exact
density ``Normal(T(y); l, C C^T + diag(psi)) |dT/dy|``, and the posterior of ``h_t`` given the
responses is Gaussian and exact (the flows' amortized guide is this closed-form encoder). In the
count model the marginal has no closed form: ``h_t`` is a local latent variable with an amortized
guide, an encoder of the responses (and of behaviour), and the held-out log-likelihood is an
importance-weighted bound. The negative binomial's gamma mixing plays the part of a private
log-rate fluctuation ``e_ti``, marginalised exactly.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints
from torch.nn import functional as F

from probtwin.errors import DataError
from probtwin.nn.mlp import mlp
from probtwin.twins.flows import MonotoneFlow
from probtwin.twins.likelihoods import LIKELIHOODS, Likelihood, inverse_softplus
from probtwin.twins.low_rank import capacitance, conditional_latent, low_rank_log_prob

__all__ = [
    "NOISE_MODELS",
    "FlowNoise",
    "IndependentNoise",
    "LatentCountNoise",
    "NoiseModel",
    "PopulationResponse",
    "make_noise",
    "resolve_likelihood",
]

NOISE_MODELS = ("independent", "flow", "zero_inflated_flow", "latent")
_QUADRATURE_NODES = 16


def resolve_likelihood(noise: str, likelihood: str | None) -> str:
    """The observation model a noise model uses (``"flow"`` for the flows)."""
    if noise not in NOISE_MODELS:
        raise DataError("noise", f"one of {NOISE_MODELS}", repr(noise))
    if noise in ("flow", "zero_inflated_flow"):
        if likelihood not in (None, "flow"):
            raise DataError("likelihood", f"None with noise={noise!r} (the flow is the likelihood)", repr(likelihood))
        return "flow"
    likelihood = likelihood or "poisson"
    allowed = ("poisson", "negative_binomial") if noise == "latent" else LIKELIHOODS
    if likelihood not in allowed:
        raise DataError("likelihood", f"one of {allowed} with noise={noise!r}", repr(likelihood))
    return likelihood


def make_noise(
    noise: str,
    likelihood: str,
    n_neurons: int,
    latent_rank: int = 0,
    n_behavior: int = 0,
    dequantize: bool = False,
) -> NoiseModel:
    """Build a session's noise model (see the module docstring)."""
    if int(latent_rank) != latent_rank or latent_rank < 0:
        raise DataError("latent_rank", "a non-negative integer", repr(latent_rank))
    if noise == "independent":
        if latent_rank:
            raise DataError("latent_rank", "0 with noise='independent'", repr(latent_rank))
        return IndependentNoise(Likelihood(likelihood, n_neurons))
    if noise == "latent":
        if latent_rank < 1:
            raise DataError("latent_rank", "at least 1 with noise='latent'", repr(latent_rank))
        return LatentCountNoise(Likelihood(likelihood, n_neurons), n_neurons, int(latent_rank), n_behavior)
    return FlowNoise(n_neurons, int(latent_rank), zero_inflated=noise == "zero_inflated_flow", dequantize=dequantize)


def gauss_hermite_mean(fn, loc: torch.Tensor, var: torch.Tensor, nodes: int = _QUADRATURE_NODES) -> torch.Tensor:
    """``E[fn(z)]`` for ``z ~ Normal(loc, var)`` elementwise, by Gauss-Hermite quadrature.

    ``fn`` acts elementwise along the last axis (neurons); shapes (..., neurons).
    """
    x, w = np.polynomial.hermite.hermgauss(nodes)
    x = torch.as_tensor(x, dtype=loc.dtype, device=loc.device)[:, None]
    w = torch.as_tensor(w / np.sqrt(np.pi), dtype=loc.dtype, device=loc.device)[:, None]
    z = loc.unsqueeze(-2) + torch.sqrt(2 * var).unsqueeze(-2) * x  # (..., nodes, neurons)
    return (w * fn(z)).sum(-2)


def open_uniform(like: torch.Tensor) -> torch.Tensor:
    """Uniform draws on the open interval (0, 1), shaped and placed like ``like`` (dequantization:
    ``y + u`` of a zero count is then never 0)."""
    eps = torch.finfo(like.dtype).eps
    return torch.rand_like(like) * (1 - eps) + eps / 2


class NoiseModel(nn.Module, ABC):
    """How responses vary around the locations. Subclasses implement :meth:`observe`,
    :meth:`sample` and :meth:`log_predictive`; models with a latent state also the latent methods
    and ``covariance()``: loadings (neurons, k) and private variances (neurons,) of the Gaussian
    space.

    Attributes
    ----------
    rank : int
        Dimensions of the shared latent state (0: none).
    gaussian_space : bool
        Whether locations live in a flow's Gaussian space (else they are mean responses).
    elements : int
        Working-set floats per neuron and trial of :meth:`mean` (for chunking).
    log_likelihood_kind : str
        What :meth:`log_predictive` computes.
    """

    rank = 0
    gaussian_space = False
    elements = 1
    log_likelihood_kind = "pointwise"

    def initialize(self, stats: dict[str, np.ndarray], field: str) -> None:
        """Check the training responses and set data-dependent starting values."""

    def location_of(self, mean: torch.Tensor) -> torch.Tensor:
        """A location whose responses average about ``mean`` (to start the readout's bias)."""
        return mean

    def distribution(self, loc: torch.Tensor, state: torch.Tensor | None = None) -> PopulationResponse:
        """The distribution of each trial's population response (event: neurons) at the
        locations (..., trials, neurons), given the trial's latent state where the model
        samples one (:meth:`local_state`)."""
        return PopulationResponse(self, loc, state)

    def local_state(self, name: str, batch: dict, loc: torch.Tensor) -> torch.Tensor | None:
        """Model statements of a per-trial latent the likelihood is given (inside the trials
        plate); None where the distribution marginalises it."""
        return None

    def observed(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The responses as the density scores them (dequantized counts for a flow)."""
        return y

    def observe(self, name: str, loc: torch.Tensor, batch: dict) -> None:
        """Pyro statements of the responses of a batch: ``loc`` (trials, neurons), or
        (draws, trials, neurons) under a query's plate of posterior draws."""
        with pyro.plate(f"trials_{batch['session']}", batch["n_total"], subsample=batch["index"], dim=-1):
            state = self.local_state(name, batch, loc)
            pyro.sample(name, self.distribution(loc, state), obs=self.observed(batch["responses"]))

    def guide(self, name: str, batch: dict, center) -> None:
        """Guide statements of the local latent variables; ``center()`` is the location at the
        posterior mean of the per-neuron parameters."""

    @abstractmethod
    def log_prob(self, loc: torch.Tensor, y: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """Log density of each trial's response vector given the locations (and the latent
        state, where the model samples one), (..., trials), nats."""

    def mean(self, loc: torch.Tensor) -> torch.Tensor:
        """Mean responses, (..., trials, neurons)."""
        return loc

    @abstractmethod
    def sample(self, loc: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """Responses, one draw per location, (..., trials, neurons), from the generator of
        ``loc``'s device (seed it with :func:`probtwin.infer.seeded`); the latent state is drawn
        from its prior where not given."""

    @abstractmethod
    def log_predictive(
        self, loc: torch.Tensor, y: torch.Tensor, center: torch.Tensor | None, behavior
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log posterior predictive density of each trial's response vector, nats.

        Parameters
        ----------
        loc : torch.Tensor, shape (draws, trials, neurons)
            Locations under posterior draws of the per-neuron parameters.
        y : torch.Tensor, shape (trials, neurons)

        Returns
        -------
        log_density : torch.Tensor, shape (trials,)
        standard_error : torch.Tensor, shape (trials,), or None where there is no Monte Carlo error
        """

    @abstractmethod
    def pointwise_log_likelihood(self, loc: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Log density of each neuron's response on its own (the latent state integrated out),
        under each draw's locations: (draws, trials, neurons), nats. ArviZ's pointwise
        ``log_likelihood`` (for PSIS-LOO over trial x neuron observations)."""

    def latent_posterior(
        self, loc: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, behavior=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean (..., trials, k) and covariance (..., trials, k, k) of the latent state
        given the responses (of the neurons in ``mask`` only, when given)."""
        shape = loc.shape[:-1]
        return loc.new_zeros(*shape, 0), loc.new_zeros(*shape, 0, 0)

    def conditional_mean(self, loc: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """Mean responses when the latent state is Normal(mean, cov)."""
        return self.mean(loc)


class IndependentNoise(NoiseModel):
    """Responses independent given their means."""

    def __init__(self, likelihood: Likelihood) -> None:
        super().__init__()
        self.likelihood = likelihood

    def initialize(self, stats: dict[str, np.ndarray], field: str) -> None:
        self.likelihood.check(float(np.min(stats["min"])), bool(np.any(stats["zeros"] > 0)), field)
        self.likelihood.init_scale(stats["std"])

    def _dist(self, loc: torch.Tensor) -> dist.TorchDistribution:
        return self.likelihood(loc.clamp_min(1e-8) if self.likelihood.nonnegative else loc)

    def log_prob(self, loc, y, state=None):
        return self._dist(loc).log_prob(y).sum(-1)

    def sample(self, loc: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        return self._dist(loc).sample()

    def log_predictive(self, loc, y, center, behavior):
        lp = self._dist(loc).log_prob(y)
        return (torch.logsumexp(lp, 0) - math.log(loc.shape[0])).sum(-1), None

    def pointwise_log_likelihood(self, loc, y):
        return self._dist(loc).log_prob(y)


class PopulationResponse(dist.TorchDistribution):
    """Each trial's population response (event: neurons) under a noise model: the one object the
    twin's model observes and every query reads (:mod:`probtwin.infer.query`).

    Parameters
    ----------
    noise : NoiseModel
    loc : torch.Tensor, shape (..., trials, neurons)
    state : torch.Tensor, shape (..., trials, k), optional
        The trials' latent state, where the model samples it (the density is then given it).

    Attributes
    ----------
    mean : torch.Tensor, shape (..., trials, neurons)
        The mean response, the latent state integrated out.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, noise: NoiseModel, loc: torch.Tensor, state: torch.Tensor | None = None) -> None:
        self.noise, self.loc, self.state = noise, loc, state
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None) -> PopulationResponse:
        shape = torch.Size(batch_shape)
        state = None if self.state is None else self.state.expand(*shape, self.state.shape[-1])
        return PopulationResponse(self.noise, self.loc.expand(*shape, *self.event_shape), state)

    @property
    def mean(self) -> torch.Tensor:
        return self.noise.mean(self.loc)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.noise.log_prob(self.loc, value, self.state)

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        state = None if self.state is None else self.state.expand(*shape, *self.state.shape)
        with torch.no_grad():
            return self.noise.sample(self.loc.expand(*shape, *self.loc.shape), state)

    def marginal(self) -> NeuronMarginal:
        """Each neuron's response on its own, the latent state integrated out."""
        return NeuronMarginal(self.noise, self.loc)

    def conditional(self, observed: torch.Tensor, values: torch.Tensor) -> ConditionalResponse:
        """Every neuron given the ``observed`` ones (mask (..., neurons)) at ``values``, through the
        posterior of the shared latent state (independent noise: unchanged)."""
        latent_mean, latent_cov = self.noise.latent_posterior(self.loc, values, observed)
        return ConditionalResponse(self.noise.conditional_mean(self.loc, latent_mean, latent_cov))


class NeuronMarginal(dist.TorchDistribution):
    """Each neuron's marginal density (batch (..., trials, neurons)), for pointwise scores."""

    arg_constraints: dict = {}
    support = constraints.real

    def __init__(self, noise: NoiseModel, loc: torch.Tensor) -> None:
        self.noise, self.loc = noise, loc
        super().__init__(loc.shape, validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.noise.pointwise_log_likelihood(self.loc, value)


class ConditionalResponse:
    """The mean response given some neurons (what a conditional prediction reads)."""

    def __init__(self, mean: torch.Tensor) -> None:
        self.mean = mean


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
    """

    gaussian_space = True
    elements = _QUADRATURE_NODES
    log_likelihood_kind = "analytic"

    def __init__(self, n_neurons: int, rank: int, zero_inflated: bool = False, dequantize: bool = False) -> None:
        super().__init__()
        self.rank = rank
        self.zero_inflated = bool(zero_inflated)
        self.dequantize = bool(dequantize)
        if self.zero_inflated and self.dequantize:
            raise DataError("dequantize", "False with noise='zero_inflated_flow' (zeros are modelled)", "True")
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
        marginalised (``extra_variance`` (..., neurons) is added to the private variances)."""
        loadings, private = self.covariance()
        if extra_variance is not None:
            private = private + extra_variance
        z, log_det, mask = self._gaussian(y)
        lp = low_rank_log_prob(z, loc, loadings, private, mask) + log_det.sum(-1)
        if self.zero_inflated:
            q = self.q
            lp = lp + torch.where(mask, torch.log(q), torch.log1p(-q)).sum(-1)
        return lp

    def observed(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return y + open_uniform(y) if self.dequantize and y is not None else y

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
        loadings, private = self.covariance()
        h = torch.randn((*loc.shape[:-1], self.rank), dtype=loc.dtype, device=loc.device)
        y = self._response(loc + h @ loadings.T + torch.randn_like(loc) * private.sqrt())
        if self.zero_inflated:
            y = y * (torch.rand_like(loc) < self.q)
        return y

    def log_predictive(self, loc, y, center, behavior):
        """The posterior of each neuron's location, moment-matched to a Normal, widens its
        private variance: ``Normal(T(y); E[l], C C^T + diag(psi + Var[l]))``, analytic."""
        if self.dequantize:
            y = y + open_uniform(y)
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

    def latent_posterior(self, loc, y, mask=None, behavior=None):
        if self.dequantize:  # the latent state of y + 1/2, the middle of the dequantized interval
            y = y + 0.5
        z, _, nonzero = self._gaussian(y)
        if nonzero is not None:
            mask = nonzero if mask is None else mask & nonzero
        loadings, private = self.covariance()
        mean, cov = conditional_latent(z - loc, loadings, private, mask)
        if cov.dim() == 2:
            cov = cov.expand(*mean.shape[:-1], *cov.shape)
        return mean, cov

    def conditional_mean(self, loc, mean, cov):
        loadings, private = self.covariance()
        shared = torch.einsum("nk,...kl,nl->...n", loadings, cov, loadings)
        return self._mean(loc + mean @ loadings.T, private + shared)


class LatentCountNoise(NoiseModel):
    """Spike counts with a shared latent state on the log rate.

    ``y_ti ~ likelihood(l_ti exp(c_i . h_t - |c_i|^2 / 2))``, ``h_t ~ Normal(0, I_k)``: the
    ``-|c_i|^2 / 2`` keeps ``l_ti`` the mean response. The guide of ``h_t`` is an encoder
    (a two-layer perceptron) of the log responses relative to the prediction, and of behaviour.

    Parameters
    ----------
    likelihood : Likelihood
        Poisson or negative binomial.
    rank : int
    n_behavior : int
        Behavioural variables the encoder sees (0: none).
    hidden : int
        Width of the encoder.
    """

    log_likelihood_kind = "importance-weighted bound"
    elements = _QUADRATURE_NODES  # the pointwise marginal's quadrature

    def __init__(self, likelihood: Likelihood, n_neurons: int, rank: int, n_behavior: int = 0, hidden: int = 128):
        super().__init__()
        self.likelihood = likelihood
        self.rank = rank
        self.n_behavior = n_behavior
        self.loadings = nn.Parameter(torch.randn(n_neurons, rank) * 0.05)
        self.register_buffer("log_scale", torch.ones(n_neurons))
        self.encoder = mlp(n_neurons + n_behavior, hidden, 2, 2 * rank)
        with torch.no_grad():  # start near the prior
            self.encoder[-1].weight.mul_(0.1)
            self.encoder[-1].bias.zero_()

    def initialize(self, stats: dict[str, np.ndarray], field: str) -> None:
        self.likelihood.check(float(np.min(stats["min"])), bool(np.any(stats["zeros"] > 0)), field)
        self.log_scale.copy_(torch.as_tensor(np.maximum(stats["log1p_std"], 1e-3), dtype=torch.float32))

    def covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loadings, torch.zeros_like(self.log_scale)

    def _rate(self, loc: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        c = self.loadings
        return loc.clamp_min(1e-8) * torch.exp(h @ c.T - 0.5 * (c**2).sum(-1))

    def _encode(self, center: torch.Tensor, y: torch.Tensor, behavior) -> tuple[torch.Tensor, torch.Tensor]:
        """The amortized guide ``q(h_t | y_t, b_t)``: mean and standard deviation, (..., trials, k)."""
        x = (torch.log1p(y) - torch.log1p(center.clamp_min(0.0))) / self.log_scale
        if self.n_behavior:
            x = torch.cat([x, behavior.expand(*x.shape[:-1], -1)], -1)
        out = self.encoder(x)
        return out[..., : self.rank], F.softplus(out[..., self.rank :]) + 1e-4

    def local_state(self, name: str, batch: dict, loc: torch.Tensor) -> torch.Tensor:
        """``h_t ~ Normal(0, I_k)``, the site ``latent_<session>``."""
        zeros = loc.new_zeros(*loc.shape[:-1], self.rank)
        return pyro.sample(f"latent_{batch['session']}", dist.Normal(zeros, 1.0).to_event(1))

    def guide(self, name: str, batch: dict, center) -> None:
        """``q(h_t | y_t, b_t)``, where the batch has responses (else the prior draws ``h_t``)."""
        if batch.get("responses") is None:
            return
        k = batch["session"]
        mean, sd = self._encode(center().detach(), batch["responses"], batch.get("behavior"))
        with pyro.plate(f"trials_{k}", batch["n_total"], subsample=batch["index"], dim=-1):
            pyro.sample(f"latent_{k}", dist.Normal(mean, sd).to_event(1))

    def log_prob(self, loc, y, state=None):
        if state is None:
            raise ValueError("the latent count model scores responses given the latent state")
        return self.likelihood(self._rate(loc, state)).log_prob(y).sum(-1)

    def sample(self, loc: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        if state is None:
            state = torch.randn((*loc.shape[:-1], self.rank), dtype=loc.dtype, device=loc.device)
        return self.likelihood(self._rate(loc, state)).sample()

    def log_predictive(self, loc, y, center, behavior):
        """``log (1/S) sum_s p(y | theta_s, h_s) p(h_s) / q(h_s | y)`` with ``theta_s`` posterior
        draws and ``h_s`` from the amortized guide; its standard error by the delta method."""
        mean, sd = self._encode(center, y, behavior)
        eps = torch.randn((loc.shape[0], *mean.shape), dtype=loc.dtype, device=loc.device)
        h = mean + sd * eps
        log_w = (
            self.likelihood(self._rate(loc, h)).log_prob(y).sum(-1)
            + dist.Normal(0.0, 1.0).log_prob(h).sum(-1)
            - dist.Normal(mean, sd).log_prob(h).sum(-1)
        )
        s = log_w.shape[0]
        lp = torch.logsumexp(log_w, 0) - math.log(s)
        w = torch.exp(log_w - log_w.max(0).values)
        se = w.std(0) / (math.sqrt(s) * w.mean(0))
        return lp, se

    def pointwise_log_likelihood(self, loc, y):
        """Each neuron's marginal, ``log E_u p(y_i | l_i exp(u - s_i^2 / 2))`` with
        ``u = c_i . h ~ Normal(0, s_i^2)``, ``s_i = |c_i|``, by Gauss-Hermite quadrature."""
        x, w = np.polynomial.hermite.hermgauss(_QUADRATURE_NODES)
        x = torch.as_tensor(x, dtype=loc.dtype, device=loc.device)[:, None, None, None]
        log_w = torch.as_tensor(np.log(w / np.sqrt(np.pi)), dtype=loc.dtype, device=loc.device)
        s2 = (self.loadings**2).sum(-1)
        rate = loc.clamp_min(1e-8) * torch.exp(torch.sqrt(2 * s2) * x - 0.5 * s2)  # (nodes, draws, trials, N)
        lp = self.likelihood(rate).log_prob(y)
        return torch.logsumexp(lp + log_w[:, None, None, None], 0)

    def latent_posterior(self, loc, y, mask=None, behavior=None, iterations: int = 25):
        """The amortized guide for whole populations; with a ``mask`` (a subset of neurons), the
        Laplace approximation (Newton's method on the log-concave posterior)."""
        if mask is None:
            mean, sd = self._encode(loc, y, behavior)
            return mean, torch.diag_embed(sd**2)
        c = self.loadings
        obs = mask.to(loc.dtype).expand_as(loc)
        log_loc = torch.log(loc.clamp_min(1e-8)) - 0.5 * (c**2).sum(-1)
        h = loc.new_zeros(*loc.shape[:-1], self.rank)
        r = F.softplus(self.likelihood.raw_total_count) if self.likelihood.name == "negative_binomial" else None
        ones = torch.ones_like(c[:, 0])
        for step_number in range(iterations + 1):
            rate = torch.exp(log_loc + h @ c.T)
            if r is None:
                grad, weight = y - rate, rate
            else:
                grad = y - (y + r) * rate / (rate + r)
                weight = (y + r) * rate * r / (rate + r) ** 2
            hess = capacitance(c, ones, obs * weight)  # minus the Hessian of the log posterior
            if step_number == iterations:
                break
            step = torch.linalg.solve(hess, ((obs * grad) @ c - h).unsqueeze(-1)).squeeze(-1)
            h = h + step / step.norm(dim=-1, keepdim=True).clamp_min(1.0)  # steps of at most the prior's scale
        return h, torch.linalg.inv(hess)

    def conditional_mean(self, loc, mean, cov):
        c = self.loadings
        shared = torch.einsum("nk,...kl,nl->...n", c, cov, c)
        return loc * torch.exp(mean @ c.T + 0.5 * shared - 0.5 * (c**2).sum(-1))
