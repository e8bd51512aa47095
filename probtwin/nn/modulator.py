"""Modulator: behaviour -> a multiplicative gain per neuron."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Modulator"]


class Modulator(nn.Module):
    """``gain_ti = exp(u_i . z(b_t))`` with ``z`` a small MLP of the behaviour.

    Parameters
    ----------
    in_features : int
        Behavioural variables.
    n_neurons : int
    hidden : int
        Dimensions of ``z``.

    Shapes
    ------
    behavior (batch, in_features) -> gain (batch, neurons)

    Examples
    --------
    >>> Modulator(3, 10)(torch.zeros(4, 3)).shape
    torch.Size([4, 10])
    """

    def __init__(self, in_features: int, n_neurons: int, hidden: int = 8) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh())
        self.loadings = nn.Parameter(torch.zeros(n_neurons, hidden))

    def log_gain(self, behavior: torch.Tensor) -> torch.Tensor:
        """``u_i . z(b_t)``, (batch, neurons)."""
        return self.embed(behavior) @ self.loadings.T

    def forward(self, behavior: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_gain(behavior))
