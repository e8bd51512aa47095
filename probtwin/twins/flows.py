"""Per-neuron monotone flows ``T``: responses -> a Gaussian space.

``T = S o A o L``, composed from :mod:`pyro.distributions.transforms`:

- ``L``: ``log`` (the inverse of ``ExpTransform``) when the responses are positive (zero-inflated
  data above zero, dequantized counts); else ``asinh((y - c_i) / w_i)`` with ``c_i`` and ``w_i``
  the mean and standard deviation of the training responses (:class:`AsinhTransform`; Pyro has
  none). Either way the tails are logarithmic, so a held-out response beyond the training range
  is not mapped far into the Gaussian's tail: a spline alone, linear outside its box, scores such
  responses as nearly impossible;
- ``A``: a fixed affine map per neuron that puts the training responses' range (after ``L``)
  inside ``[-0.8 K, 0.8 K]``;
- ``S``: a learned monotone rational-quadratic spline per neuron on ``[-K, K]`` (Durkan et al.
  2019), the identity outside; it starts as the identity.

``log |dT/dy|`` is exact, so the density of the responses is the Gaussian density of ``T(y)``
times the Jacobian.
"""

from __future__ import annotations

import numpy as np
import torch
from pyro.distributions import transforms as T
from torch import nn
from torch.distributions import constraints

from probtwin.twins.likelihoods import inverse_softplus

__all__ = ["AsinhTransform", "MonotoneFlow"]


class AsinhTransform(T.Transform):
    """``y -> asinh((y - center) / width)``, elementwise: linear near ``center``, logarithmic in
    both tails."""

    domain = constraints.real
    codomain = constraints.real
    bijective = True

    def __init__(self, center: torch.Tensor, width: torch.Tensor, cache_size: int = 0) -> None:
        super().__init__(cache_size=cache_size)
        self.center, self.width = center, width

    def _call(self, y: torch.Tensor) -> torch.Tensor:
        return torch.asinh((y - self.center) / self.width)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        return self.center + self.width * torch.sinh(x)

    def log_abs_det_jacobian(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        u = (y - self.center) / self.width
        return -0.5 * torch.log1p(u**2) - torch.log(self.width)


class MonotoneFlow(nn.Module):
    """A learned monotone map of every neuron's responses.

    Parameters
    ----------
    n_neurons : int
    log_stage : bool
        Start with ``log y`` (responses must be positive); else with ``asinh``.
    count_bins : int
        Spline segments per neuron.
    bound : float
        The spline acts on ``[-bound, bound]`` (in the affine stage's units).

    Shapes
    ------
    y (..., neurons) -> z (..., neurons), log |dz/dy| (..., neurons)
    """

    def __init__(self, n_neurons: int, log_stage: bool, count_bins: int = 8, bound: float = 5.0) -> None:
        super().__init__()
        self.log_stage = bool(log_stage)
        self.register_buffer("center", torch.zeros(n_neurons))
        self.register_buffer("width", torch.ones(n_neurons))
        self.register_buffer("offset", torch.zeros(n_neurons))
        self.register_buffer("scale", torch.ones(n_neurons))
        self.spline = T.Spline(n_neurons, count_bins=count_bins, bound=bound, order="quadratic")
        with torch.no_grad():  # the identity: equal bins, unit slopes at the knots
            self.spline.unnormalized_widths.zero_()
            self.spline.unnormalized_heights.zero_()
            self.spline.unnormalized_derivatives.fill_(float(inverse_softplus(torch.tensor(1.0))))

    def _first(self) -> T.Transform:
        if self.log_stage:
            return T.ExpTransform().inv
        return AsinhTransform(self.center, self.width)

    def set_range(
        self, low: np.ndarray, high: np.ndarray, center: np.ndarray | None = None, width: np.ndarray | None = None
    ) -> None:
        """Fit the stages to the training responses: the asinh stage's ``center`` and ``width``
        (their mean and standard deviation; not used with the log stage), then the affine stage
        that maps the range ``[low, high]`` per neuron into 80% of the spline's box."""
        if center is not None:
            self.center.copy_(torch.as_tensor(center, dtype=torch.float32))
        if width is not None:
            self.width.copy_(torch.as_tensor(np.maximum(width, 1e-6), dtype=torch.float32))
        first = self._first()
        low_t = first(torch.as_tensor(low, dtype=torch.float32).to(self.offset))
        high_t = first(torch.as_tensor(high, dtype=torch.float32).to(self.offset))
        half = ((high_t - low_t) / 2).clamp_min(1e-3)
        self.offset.copy_((high_t + low_t) / 2)
        self.scale.copy_(half / (0.8 * self.spline.bound))

    def transform(self) -> T.ComposeTransform:
        """``T`` as a Pyro transform (elementwise: the last axis is neurons)."""
        affine = T.AffineTransform(-self.offset / self.scale, 1.0 / self.scale)
        return T.ComposeTransform([self._first(), affine, self.spline])

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z = T(y)`` and the elementwise ``log |dT/dy|``."""
        if self.log_stage:
            x = torch.log(y)
            log_det = -x
        else:
            u = (y - self.center) / self.width
            x = torch.asinh(u)
            log_det = -0.5 * torch.log1p(u**2) - torch.log(self.width)
        x = (x - self.offset) / self.scale
        log_det = log_det - torch.log(self.scale)
        z, spline_log_det = self.spline.spline_op(x)
        return z, log_det + spline_log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``y = T^-1(z)``."""
        x, _ = self.spline.spline_op(z, inverse=True)
        x = x * self.scale + self.offset
        return torch.exp(x) if self.log_stage else self.center + self.width * torch.sinh(x)
