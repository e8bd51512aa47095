"""The noise model's interface, and the distribution object every twin's model observes.

A noise model turns a twin's locations (trials, neurons) into the distribution of each trial's
population response, :class:`PopulationResponse`: its ``log_prob`` is what the model scores,
its ``sample`` what it draws, its ``mean`` what ``predict`` reads, its ``marginal()`` the
pointwise density behind ArviZ's log-likelihood, and its ``conditional()`` what ``given``
reads. A noise model writes the math of each once, as methods; the distribution hands them to
Pyro's trace and to the query engine (:mod:`probtwin.infer.query`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.distributions import constraints

__all__ = [
    "ConditionalResponse",
    "NeuronMarginal",
    "NoiseModel",
    "PopulationResponse",
    "gauss_hermite_mean",
    "open_uniform",
    "per_frame",
]

QUADRATURE_NODES = 16


def gauss_hermite_mean(fn, loc: torch.Tensor, var: torch.Tensor, nodes: int = QUADRATURE_NODES) -> torch.Tensor:
    """``E[fn(z)]`` for ``z ~ Normal(loc, var)`` elementwise, by Gauss-Hermite quadrature.

    ``fn`` acts elementwise along the last axis (neurons); shapes (..., neurons).
    """
    x, w = np.polynomial.hermite.hermgauss(nodes)
    x = torch.as_tensor(x, dtype=loc.dtype, device=loc.device)[:, None]
    w = torch.as_tensor(w / np.sqrt(np.pi), dtype=loc.dtype, device=loc.device)[:, None]
    z = loc.unsqueeze(-2) + torch.sqrt(2 * var).unsqueeze(-2) * x  # (..., nodes, neurons)
    return (w * fn(z)).sum(-2)


def per_frame(values: torch.Tensor | None, frames: int) -> torch.Tensor | None:
    """Behaviour or gaze per frame, (trials, frames, d): given so, a per-trial value (trials, d)
    repeated over ``frames``, or the last ``frames`` of more (a clip's inputs, whose first frames
    are unscored)."""
    if values is None:
        return None
    if values.dim() == 2:
        return values[:, None].expand(-1, frames, -1)
    return values[:, values.shape[1] - frames :]


def open_uniform(like: torch.Tensor) -> torch.Tensor:
    """Uniform draws on the open interval (0, 1), shaped and placed like ``like`` (dequantization:
    ``y + u`` of a zero count is then never 0)."""
    eps = torch.finfo(like.dtype).eps
    return torch.rand_like(like) * (1 - eps) + eps / 2


class NoiseModel(nn.Module, ABC):
    """How responses vary around the locations. Subclasses implement :meth:`log_prob`,
    :meth:`sample`, :meth:`pointwise_log_likelihood` and :meth:`log_predictive` (and
    :meth:`mean` where the location is not the mean response); a per-trial latent the
    likelihood is given comes from :meth:`local_state` and :meth:`guide`; models with a shared
    latent state also implement :meth:`latent_posterior`, :meth:`conditional_mean` and
    ``covariance()``: loadings (neurons, k) and private variances (neurons,) of the Gaussian
    space. :meth:`observe` (the model's statements) and :meth:`distribution` follow from these.

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

    def distribution(
        self,
        loc: torch.Tensor,
        state: torch.Tensor | None = None,
        frames: bool = False,
        frame_mask: torch.Tensor | None = None,
    ) -> PopulationResponse:
        """The distribution of each trial's population response (event: neurons) at the
        locations (..., trials, neurons), given the trial's latent state where the model
        samples one (:meth:`local_state`); ``frames``: of each trial's responses per frame
        (event: frames, neurons; locations (..., trials, frames, neurons)), scored by the
        ``*_frames`` methods (by default the frames independent given their locations), only
        those in ``frame_mask`` (trials, frames) scored (trials of unequal length)."""
        return PopulationResponse(self, loc, state, frames, frame_mask)

    def local_state(self, name: str, batch: dict, loc: torch.Tensor) -> torch.Tensor | None:
        """Model statements of a per-trial latent the likelihood is given (inside the trials
        plate; per frame, (trials, frames, k), where ``batch["per_frame"]``); None where the
        distribution marginalises it."""
        return None

    def observe(self, name: str, loc: torch.Tensor, batch: dict) -> None:
        """Pyro statements of the responses of a batch: ``loc`` (trials, neurons), or
        (draws, trials, neurons) under a query's plate of posterior draws; per-frame responses
        (``batch["per_frame"]``) with a frames axis before the neurons, their log density
        multiplied by ``batch["likelihood_scale"]`` (a clip's frames standing for its trial's;
        a number, or one per trial), only the frames in ``batch["frame_mask"]`` scored."""
        frames = bool(batch.get("per_frame"))
        plate = pyro.plate(f"trials_{batch['session']}", batch["n_total"], subsample=batch["index"], dim=-1)
        with plate, poutine.scale(scale=batch.get("likelihood_scale", 1.0)):
            state = self.local_state(name, batch, loc)
            response = self.distribution(loc, state, frames, batch.get("frame_mask"))
            pyro.sample(name, response, obs=batch["responses"])

    # ----------------------------------------------------------- a trial's frames
    # Per-frame responses (..., trials, frames, neurons), ``frame_mask`` (trials, frames) the
    # frames a trial has. By default the frames are independent given their locations (and their
    # own latent states); a model whose state persists over frames overrides these.

    def log_prob_frames(
        self, loc: torch.Tensor, y: torch.Tensor, state: torch.Tensor | None = None, frame_mask=None, **options
    ) -> torch.Tensor:
        """Log density of each trial's frames, (..., trials), summed over the frames in
        ``frame_mask`` (``options``: :meth:`log_prob`'s)."""
        lp = self.log_prob(loc, y, state, **options)
        if frame_mask is not None:
            lp = torch.where(frame_mask, lp, torch.zeros_like(lp))
        return lp.sum(-1)

    def sample_frames(self, loc: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """Responses of each trial's frames, one draw per location, (..., trials, frames, neurons)."""
        return self.sample(loc, state)

    def log_predictive_frames(
        self, loc: torch.Tensor, y: torch.Tensor, center, behavior, frame_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`log_predictive` of each trial's frames in ``frame_mask``: (trials,) log
        density and standard error; ``loc`` (draws, trials, frames, neurons)."""
        lp, se = self.log_predictive(loc, y, center, behavior)
        se = torch.zeros_like(lp) if se is None else se
        zero = torch.zeros_like(lp)
        return torch.where(frame_mask, lp, zero).sum(-1), torch.where(frame_mask, se.pow(2), zero).sum(-1).sqrt()

    def latent_posterior_frames(
        self, loc: torch.Tensor, y: torch.Tensor, mask=None, behavior=None, frame_mask=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`latent_posterior` of each frame's state, (..., trials, frames, k) and
        (..., trials, frames, k, k), given the trial's responses on the frames in ``frame_mask``."""
        return self.latent_posterior(loc, y, mask, behavior)

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


class PopulationResponse(dist.TorchDistribution):
    """Each trial's population response (event: neurons) under a noise model: the one object the
    twin's model observes and every query reads (:mod:`probtwin.infer.query`).

    Parameters
    ----------
    noise : NoiseModel
    loc : torch.Tensor, shape (..., trials, neurons), or (..., trials, frames, neurons)
    state : torch.Tensor, shape (..., trials, k) or (..., trials, frames, k), optional
        The trials' (frames') latent state, where the model samples it (the density is then
        given it).
    frames : bool
        Per-frame responses: the event is (frames, neurons), a trial's frames scored by the
        noise model's ``*_frames`` methods (by default independent given their locations and
        their latent states; jointly where a latent state persists over frames).
    frame_mask : torch.Tensor of bool, shape (trials, frames), optional
        Per-frame responses of trials of unequal length: the frames that are the trials' (the
        others, padding, add nothing to the log density).

    Attributes
    ----------
    mean : torch.Tensor, shape (..., trials, [frames,] neurons)
        The mean response, the latent state integrated out.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(
        self,
        noise: NoiseModel,
        loc: torch.Tensor,
        state: torch.Tensor | None = None,
        frames: bool = False,
        frame_mask: torch.Tensor | None = None,
    ) -> None:
        if frame_mask is not None and not frames:
            raise ValueError("a frame mask needs per-frame responses")
        self.noise, self.loc, self.state, self.frames, self.frame_mask = noise, loc, state, frames, frame_mask
        event = 2 if frames else 1
        super().__init__(loc.shape[:-event], loc.shape[-event:], validate_args=False)

    def expand(self, batch_shape, _instance=None) -> PopulationResponse:
        shape = torch.Size(batch_shape)
        if self.state is not None:  # its axes after the trials: ([frames,] k)
            state = self.state.expand(*shape, *self.state.shape[-len(self.event_shape) :])
        else:
            state = None
        loc = self.loc.expand(*shape, *self.event_shape)
        return PopulationResponse(self.noise, loc, state, self.frames, self.frame_mask)

    @property
    def mean(self) -> torch.Tensor:
        return self.noise.mean(self.loc)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self.frames:
            return self.noise.log_prob_frames(self.loc, value, self.state, self.frame_mask)
        return self.noise.log_prob(self.loc, value, self.state)

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        state = None if self.state is None else self.state.expand(*shape, *self.state.shape)
        loc = self.loc.expand(*shape, *self.loc.shape)
        with torch.no_grad():
            return self.noise.sample_frames(loc, state) if self.frames else self.noise.sample(loc, state)

    def marginal(self) -> NeuronMarginal:
        """Each neuron's response on its own, the latent state integrated out."""
        return NeuronMarginal(self.noise, self.loc)

    def conditional(self, observed: torch.Tensor, values: torch.Tensor) -> ConditionalResponse:
        """Every neuron given the ``observed`` ones (mask (..., neurons)) at ``values``, through the
        posterior of the shared latent state (independent noise: unchanged)."""
        if self.frames:
            latent_mean, latent_cov = self.noise.latent_posterior_frames(
                self.loc, values, observed, None, self.frame_mask
            )
        else:
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
