"""A small multilayer perceptron, the shape shared by shifters, modulators and position priors."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp"]


def mlp(
    in_features: int,
    hidden: int,
    layers: int,
    out_features: int,
    activation: type[nn.Module] = nn.ELU,
) -> nn.Sequential:
    """``layers - 1`` hidden layers of ``hidden`` units with ``activation``, then a linear output.

    Shapes
    ------
    (batch, in_features) -> (batch, out_features)
    """
    mods: list[nn.Module] = []
    width = in_features
    for _ in range(layers - 1):
        mods += [nn.Linear(width, hidden), activation()]
        width = hidden
    mods.append(nn.Linear(width, out_features))
    return nn.Sequential(*mods)
