"""Shifter: eye position -> a shift of every readout position, or of every frame a core sees."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from probtwin.nn.mlp import mlp

__all__ = ["Shifter", "shift_frames"]


class Shifter(nn.Module):
    """A small MLP from gaze to a bounded shift, ``max_shift * tanh(MLP(g))`` (neuralpredictors'
    ``MLPShifter``).

    Parameters
    ----------
    in_features : int
        Gaze coordinates (2).
    hidden : int
    layers : int
    max_shift : float
        Largest shift in grid units (the map spans [-1, 1]).

    Shapes
    ------
    gaze (batch, in_features) -> shift (batch, 2)
    """

    def __init__(self, in_features: int = 2, hidden: int = 5, layers: int = 2, max_shift: float = 0.5) -> None:
        super().__init__()
        self.net = mlp(in_features, hidden, layers, 2, nn.Tanh)
        nn.init.zeros_(self.net[-1].weight)  # start with no shift
        nn.init.zeros_(self.net[-1].bias)
        self.max_shift = max_shift

    def forward(self, gaze: torch.Tensor) -> torch.Tensor:
        return self.max_shift * torch.tanh(self.net(gaze))


def shift_frames(frames: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each frame sampled at ``q + shift``: output pixel ``q`` holds the input at ``q + shift``
    (bilinear between pixels, zero outside the frame). With the eye's shift, the screen's frames
    become what the retina sees.

    Parameters
    ----------
    frames : torch.Tensor, shape (n, C, H, W)
    shift : torch.Tensor, shape (n, 2)
        (x, y) in grid units: the frame spans [-1, 1] in each direction (a :class:`Shifter`'s
        output; one pixel is ``2 / W`` in x and ``2 / H`` in y).

    Returns
    -------
    torch.Tensor, shape (n, C, H, W)
    """
    n = frames.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=frames.dtype, device=frames.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift.to(frames.dtype)
    grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
