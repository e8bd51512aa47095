"""Per-neuron monotone flows ``T``: responses -> a Gaussian space.

``T = S o A o L``, composed from :mod:`pyro.distributions.transforms`:

- ``L``: ``log`` (the inverse of ``ExpTransform``) when the responses are positive (zero-inflated
  data above zero, dequantized counts), else the identity;
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

from probtwin.twins.likelihoods import inverse_softplus

__all__ = ["MonotoneFlow"]


class MonotoneFlow(nn.Module):
    """A learned monotone map of every neuron's responses.

    Parameters
    ----------
    n_neurons : int
    log_stage : bool
        Start with ``log y`` (responses must be positive).
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
        self.register_buffer("offset", torch.zeros(n_neurons))
        self.register_buffer("scale", torch.ones(n_neurons))
        self.spline = T.Spline(n_neurons, count_bins=count_bins, bound=bound, order="quadratic")
        with torch.no_grad():  # the identity: equal bins, unit slopes at the knots
            self.spline.unnormalized_widths.zero_()
            self.spline.unnormalized_heights.zero_()
            self.spline.unnormalized_derivatives.fill_(float(inverse_softplus(torch.tensor(1.0))))

    def set_range(self, low: np.ndarray, high: np.ndarray) -> None:
        """Map the training range (after the log stage) ``[low, high]`` per neuron into the spline's box."""
        low_t = torch.as_tensor(low, dtype=torch.float32)
        high_t = torch.as_tensor(high, dtype=torch.float32)
        if self.log_stage:
            low_t, high_t = torch.log(low_t), torch.log(high_t)
        half = ((high_t - low_t) / 2).clamp_min(1e-3)
        self.offset.copy_((high_t + low_t) / 2)
        self.scale.copy_(half / (0.8 * self.spline.bound))

    def transform(self) -> T.ComposeTransform:
        """``T`` as a Pyro transform (elementwise: the last axis is neurons)."""
        parts: list = [T.ExpTransform().inv] if self.log_stage else []
        parts += [T.AffineTransform(-self.offset / self.scale, 1.0 / self.scale), self.spline]
        return T.ComposeTransform(parts)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z = T(y)`` and the elementwise ``log |dT/dy|``."""
        x = y
        log_det = torch.zeros_like(y)
        if self.log_stage:
            x = torch.log(y)
            log_det = log_det - x
        x = (x - self.offset) / self.scale
        log_det = log_det - torch.log(self.scale)
        z, spline_log_det = self.spline.spline_op(x)
        return z, log_det + spline_log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``y = T^-1(z)``."""
        x, _ = self.spline.spline_op(z, inverse=True)
        x = x * self.scale + self.offset
        return torch.exp(x) if self.log_stage else x
