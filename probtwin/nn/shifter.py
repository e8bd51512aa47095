"""Shifter: eye position -> a shift of every readout position."""

from __future__ import annotations

import torch
from torch import nn

from probtwin.nn.mlp import mlp

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
        self.net = mlp(in_features, hidden, layers, 2, nn.Tanh)
        nn.init.zeros_(self.net[-1].weight)  # start with no shift
        nn.init.zeros_(self.net[-1].bias)
        self.max_shift = max_shift

    def forward(self, gaze: torch.Tensor) -> torch.Tensor:
        return self.max_shift * torch.tanh(self.net(gaze))
