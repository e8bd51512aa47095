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

For responses per frame (:class:`~probtwin.twins.video.VideoTwin`) each frame has its own
latent state, independent over frames; a flow's may instead persist over a trial's frames as an
AR(1) process (``ar1``; :mod:`probtwin.twins.state_space`), its frames then scored jointly
(``NoiseModel.log_prob_frames`` and the other ``*_frames`` methods).
"""

from __future__ import annotations

from probtwin.errors import DataError
from probtwin.twins.likelihoods import LIKELIHOODS, Likelihood
from probtwin.twins.noise.base import (
    ConditionalResponse,
    NeuronMarginal,
    NoiseModel,
    PopulationResponse,
    gauss_hermite_mean,
    open_uniform,
    per_frame,
)
from probtwin.twins.noise.flow import FlowNoise
from probtwin.twins.noise.independent import IndependentNoise
from probtwin.twins.noise.latent_counts import LatentCountNoise

__all__ = [
    "NOISE_MODELS",
    "ConditionalResponse",
    "FlowNoise",
    "IndependentNoise",
    "LatentCountNoise",
    "NeuronMarginal",
    "NoiseModel",
    "PopulationResponse",
    "gauss_hermite_mean",
    "make_noise",
    "open_uniform",
    "per_frame",
    "resolve_likelihood",
]

NOISE_MODELS = ("independent", "flow", "zero_inflated_flow", "latent")
"""The noise models a twin takes (``noise=``)."""


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
    ar1: bool = False,
) -> NoiseModel:
    """Build a session's noise model (see the module docstring); ``ar1``: a flow's latent state
    persists over frames (responses per frame)."""
    if ar1 and noise not in ("flow", "zero_inflated_flow"):
        raise DataError("latent_ar1", "False unless noise is 'flow' or 'zero_inflated_flow'", f"True, noise={noise!r}")
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
    zero_inflated = noise == "zero_inflated_flow"
    return FlowNoise(n_neurons, int(latent_rank), zero_inflated=zero_inflated, dequantize=dequantize, ar1=ar1)
