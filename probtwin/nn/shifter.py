"""Shifter: eye position -> a shift of every readout position."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Shifter"]


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
        mods: list[nn.Module] = []
        width = in_features
        for _ in range(layers - 1):
            mods += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        last = nn.Linear(width, 2)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        mods.append(last)
        self.net = nn.Sequential(*mods)
        self.max_shift = max_shift

    def forward(self, gaze: torch.Tensor) -> torch.Tensor:
        return self.max_shift * torch.tanh(self.net(gaze))
