"""Observation models of the twins: per-neuron noise parameters (point estimates) and the Pyro
distribution of responses given the mean response.

=====================  ====================================================  ==================
name                   distribution of y given the mean lambda               responses allowed
=====================  ====================================================  ==================
``poisson``            Poisson(lambda)                                       >= 0
``negative_binomial``  NegativeBinomial(total_count r_i, mean lambda)        >= 0
``gamma``              Gamma(k_i, rate k_i / lambda)                         > 0
``zig``                0 w.p. 1 - q_i, else Gamma(k_i, rate k_i q_i / lambda)  >= 0
``normal``             Normal(lambda, sigma_i)                               any
=====================  ====================================================  ==================

The count models accept non-integer responses (trial averages): their log-probability is then
the Poisson (or negative-binomial) *quasi*-likelihood, the loss of the Sensorium baseline, not a
density; see the ImageTwin guide page for what the evaluation's figures mean there.
"""

from __future__ import annotations

import numpy as np
import torch
from pyro import distributions as dist
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam
from torch.nn import functional as F

from probtwin.errors import DataError

__all__ = ["LIKELIHOODS", "Likelihood", "ZeroInflatedGamma"]

LIKELIHOODS = ("poisson", "negative_binomial", "gamma", "zig", "normal")
"""The per-neuron likelihoods a twin takes (``likelihood=``)."""


class ZeroInflatedGamma(dist.TorchDistribution):
    """``y = 0`` with probability ``1 - q``, else ``Gamma(k, rate)``; mean ``q k / rate``."""

    arg_constraints = {
        "q": constraints.unit_interval,
        "concentration": constraints.positive,
        "rate": constraints.positive,
    }
    support = constraints.nonnegative

    def __init__(self, q: torch.Tensor, concentration: torch.Tensor, rate: torch.Tensor, validate_args=None):
        self.q, self.concentration, self.rate = torch.broadcast_tensors(q, concentration, rate)
        super().__init__(self.q.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return ZeroInflatedGamma(self.q.expand(shape), self.concentration.expand(shape), self.rate.expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        positive = value > 0
        safe = torch.where(positive, value, torch.ones_like(value))
        gamma = torch.distributions.Gamma(self.concentration, self.rate, validate_args=False).log_prob(safe)
        return torch.where(positive, torch.log(self.q) + gamma, torch.log1p(-self.q))

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            g = torch.distributions.Gamma(self.concentration.expand(shape), self.rate.expand(shape)).sample()
            return torch.where(torch.rand(shape, device=self.q.device) < self.q.expand(shape), g, torch.zeros_like(g))


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    """The value whose softplus is ``x`` (``x > 0``)."""
    return x + torch.log(-torch.expm1(-x))


def link(eta: torch.Tensor, output: str, likelihood: str) -> torch.Tensor:
    """The mean response from the readout's drive: ELU + 1 or softplus (``output``), the
    identity for a Normal likelihood."""
    if likelihood == "normal":
        return eta
    if output == "softplus":
        return F.softplus(eta) + 1e-6
    return F.elu(eta) + 1.0 + 1e-6


def inverse_link(mean: torch.Tensor, output: str, likelihood: str) -> torch.Tensor:
    """The drive whose :func:`link` is ``mean`` (means under 1e-3 taken as 1e-3)."""
    if likelihood == "normal":
        return mean
    mean = mean.clamp_min(1e-3)
    if output == "softplus":
        return inverse_softplus(mean)
    return torch.where(mean >= 1, mean - 1, torch.log(mean))


class Likelihood(PyroModule):
    """Observation model with per-neuron noise parameters (point estimates, ``PyroParam`` with
    their constraints: ``total_count``, ``concentration``, ``scale`` positive through a
    softplus, ``q`` in the unit interval through a sigmoid).

    The parameters are module-local: the module is never called as a ``PyroModule`` (its
    distribution comes from :meth:`distribution`), so nothing enters Pyro's global param store.

    Parameters
    ----------
    name : one of :data:`LIKELIHOODS`
    n_neurons : int
    """

    def __init__(self, name: str, n_neurons: int) -> None:
        super().__init__()
        if name not in LIKELIHOODS:
            raise DataError("likelihood", f"one of {LIKELIHOODS}", repr(name))
        self.name = name
        one = torch.ones(n_neurons)
        if name == "negative_binomial":
            self.total_count = PyroParam(5.0 * one, constraint=constraints.softplus_positive)
        if name in ("gamma", "zig"):
            self.concentration = PyroParam(2.0 * one, constraint=constraints.softplus_positive)
        if name == "zig":
            self.q = PyroParam(0.5 * one, constraint=constraints.unit_interval)
        if name == "normal":
            self.scale = PyroParam(one, constraint=constraints.softplus_positive)

    @property
    def nonnegative(self) -> bool:
        return self.name in ("poisson", "negative_binomial", "zig", "gamma")

    def check(self, responses_min: float, responses_zero: bool, field: str = "responses") -> None:
        """Refuse responses outside the support (negative for counts, zero for gamma)."""
        if self.nonnegative and responses_min < 0:
            raise DataError(
                field,
                f"non-negative responses for likelihood={self.name!r}",
                f"minimum {responses_min:.4g} (use likelihood='normal' for dF/F)",
            )
        if self.name == "gamma" and responses_zero:
            raise DataError(field, "positive responses for likelihood='gamma'", "exact zeros (use 'zig')")

    def init_scale(self, std: np.ndarray) -> None:
        """Start the Gaussian noise scale at the responses' standard deviation, shape (neurons,)."""
        if self.name == "normal":
            with torch.no_grad():
                value = torch.as_tensor(np.maximum(std, 1e-3), dtype=torch.float32)
                self.scale_unconstrained.copy_(inverse_softplus(value))

    def distribution(self, mean: torch.Tensor) -> dist.TorchDistribution:
        """The distribution of responses, batch shape ``mean.shape`` (..., neurons)."""
        if self.name == "poisson":
            return dist.Poisson(mean, validate_args=False)
        if self.name == "negative_binomial":
            r = self.total_count
            return dist.NegativeBinomial(total_count=r, logits=torch.log(mean) - torch.log(r), validate_args=False)
        if self.name == "gamma":
            k = self.concentration
            return dist.Gamma(k, k / mean, validate_args=False)
        if self.name == "zig":
            k, q = self.concentration, self.q
            return ZeroInflatedGamma(q, k, k * q / mean)
        return dist.Normal(mean, self.scale, validate_args=False)
