"""Spatiotemporal feature cores: videos -> per-frame feature maps shared by every neuron.

A factorized 3-D core (each layer a spatial convolution, then a causal temporal one, as in the
Sensorium 2023 baseline, Turishcheva et al. 2023) with an optional convolutional GRU on top.
Causal: the features of frame t depend on frames up to t only, so a clip's first frames lack
history (the twin leaves them unscored: its ``burn_in``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from probtwin.nn.core import laplace_penalty

__all__ = ["ConvGRU", "FactorizedCore3d"]


class _CausalTemporal(nn.Conv2d):
    """A causal convolution over frames: frame t mixes the channels of frames t - k + 1 .. t
    (zeros before the first); a (k, 1) convolution of (batch, C, frames, pixels).

    Shapes
    ------
    (batch, C, frames, pixels) -> (batch, C, frames, pixels)
    """

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__(channels, channels, (kernel, 1), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (0, 0, self.kernel_size[0] - 1, 0)))


class _Layer(nn.Module):
    """Spatial convolution of every frame, causal temporal convolution, batch norm, ELU; on
    (batch * frames, C, H, W) channels-last maps."""

    def __init__(self, in_channels: int, channels: int, kernel: int, frames: int, separable: bool) -> None:
        super().__init__()
        if separable:
            self.spatial = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, kernel, padding=kernel // 2, groups=in_channels, bias=False),
                nn.Conv2d(in_channels, channels, 1, bias=False),
            )
        else:
            self.spatial = nn.Conv2d(in_channels, channels, kernel, padding=kernel // 2, bias=False)
        self.temporal = _CausalTemporal(channels, frames)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        y = self.spatial(x)  # (batch * frames, C, H, W), channels-last
        _, c, h, w = y.shape
        y = self.temporal(y.unflatten(0, (batch, -1)).transpose(1, 2).reshape(batch, c, -1, h * w))
        y = y.unflatten(-1, (h, w)).transpose(1, 2).flatten(0, 1).contiguous(memory_format=torch.channels_last)
        return F.elu(self.norm(y))


class ConvGRU(nn.Module):
    """A convolutional GRU over frames: hidden maps (batch, C, H, W) updated frame by frame.

    Shapes
    ------
    input (batch, C, frames, H, W) -> output (batch, C, frames, H, W), the hidden state after each
    frame (zero before the first).
    """

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 2 * channels, kernel, padding=kernel // 2)
        self.candidate = nn.Conv2d(2 * channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(x[:, :, 0])
        out = []
        for t in range(x.shape[2]):  # recurrence: each frame needs the last one's state
            xt = x[:, :, t]
            update, reset = torch.sigmoid(self.gates(torch.cat([xt, h], 1))).chunk(2, 1)
            new = torch.tanh(self.candidate(torch.cat([xt, reset * h], 1)))
            h = (1 - update) * h + update * new
            out.append(h)
        return torch.stack(out, 2)


class FactorizedCore3d(nn.Module):
    """Stacked factorized space-time convolutions, optionally followed by a ConvGRU.

    Each layer: a spatial convolution of every frame (``input_kernel`` in layer 1, then
    depth-separable ``hidden_kernel`` ones), a causal temporal convolution (``input_frames``,
    then ``hidden_frames`` lags), batch norm and ELU. Padding keeps the spatial size and the
    frames. Frames run as a batch of images in channels-last layout (the fast path of CPU
    convolutions); the temporal convolutions are matrix products over lags.

    Parameters
    ----------
    in_channels : int
        Video channels (plus behavioural channels when behaviour enters the core).
    hidden_channels, layers : int
    input_kernel, hidden_kernel : int
        Odd spatial kernel sizes.
    input_frames, hidden_frames : int
        Temporal kernel lengths (frames of history each layer adds: that minus one).
    recurrent : bool
        A ConvGRU over the last layer's features.

    Shapes
    ------
    input (batch, in_channels, frames, H, W) -> :meth:`frames` (batch * frames, hidden_channels,
    H, W), frames after batch; ``forward``: (batch, hidden_channels, frames, H, W)

    Examples
    --------
    >>> core = FactorizedCore3d(1, hidden_channels=4, layers=2)
    >>> core(torch.zeros(2, 1, 10, 12, 16)).shape
    torch.Size([2, 4, 10, 12, 16])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 16,
        layers: int = 3,
        input_kernel: int = 9,
        hidden_kernel: int = 5,
        input_frames: int = 9,
        hidden_frames: int = 3,
        recurrent: bool = False,
    ) -> None:
        super().__init__()
        if input_kernel % 2 == 0 or hidden_kernel % 2 == 0:
            raise ValueError("spatial kernel sizes must be odd so that features stay centred")
        if min(input_frames, hidden_frames) < 1:
            raise ValueError("temporal kernels need at least one frame")
        self.in_channels = in_channels
        self.out_channels = hidden_channels
        self.layers = nn.ModuleList(
            _Layer(in_channels, hidden_channels, input_kernel, input_frames, separable=False)
            if k == 0
            else _Layer(hidden_channels, hidden_channels, hidden_kernel, hidden_frames, separable=True)
            for k in range(layers)
        )
        self.recurrent = ConvGRU(hidden_channels) if recurrent else None
        self.history = (input_frames - 1) + (layers - 1) * (hidden_frames - 1)  # frames of past each output sees
        self.to(memory_format=torch.channels_last)

    @property
    def input_weight(self) -> torch.Tensor:
        """The first layer's spatial kernels, (out, in, k, k)."""
        return self.layers[0].spatial.weight

    def laplace_penalty(self) -> torch.Tensor:
        """Smoothness penalty of the first layer's spatial kernels."""
        return laplace_penalty(self.input_weight)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps of every frame, (batch * frames, C, H, W), frames after batch."""
        batch = x.shape[0]
        y = x.transpose(1, 2).flatten(0, 1).contiguous(memory_format=torch.channels_last)
        for layer in self.layers:
            y = layer(y, batch)
        if self.recurrent is not None:
            y = self.recurrent(y.unflatten(0, (batch, -1)).transpose(1, 2)).transpose(1, 2).flatten(0, 1)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frames(x).unflatten(0, (x.shape[0], -1)).transpose(1, 2)
