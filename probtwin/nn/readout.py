"""Readouts: per-neuron positions and weights that read a core's feature map."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from probtwin.nn.gaze import sum_over_lags
from probtwin.nn.mlp import mlp

__all__ = ["GaussianReadout", "PositionPredictor", "read_features", "readout_response"]


def read_features(features: torch.Tensor, positions: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear interpolation of a feature map at per-neuron positions.

    Parameters
    ----------
    features : torch.Tensor, shape (batch, channels, H, W)
    positions : torch.Tensor, shape (neurons, 2) or (draws, neurons, 2)
        (x, y) in grid coordinates: -1 is the left (top) edge of the map, +1 the right (bottom),
        as ``torch.nn.functional.grid_sample`` with ``align_corners=False``.
    shift : torch.Tensor, shape (batch, 2), optional
        Added to every position of a trial (eye movements).

    Returns
    -------
    torch.Tensor, shape (batch, channels, neurons) or (batch, channels, draws, neurons)
    """
    batch = features.shape[0]
    draws = positions.shape[:-2]
    grid = positions.reshape(1, -1, 1, 2).expand(batch, -1, -1, -1)
    if shift is not None:
        grid = grid + shift[:, None, None, :]
    out = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(batch, features.shape[1], *draws, positions.shape[-2])


def readout_response(
    features: torch.Tensor,
    positions: torch.Tensor,
    weights: torch.Tensor,
    bias: torch.Tensor,
    shift: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
    state_weights: torch.Tensor | None = None,
    lags: torch.Tensor | None = None,
    frames: int | None = None,
) -> torch.Tensor:
    """``(w_i + V_i^T z_t) . F[p_i + shift] + beta_i`` for every trial and neuron.

    Parameters
    ----------
    features : torch.Tensor, shape (batch, channels, H, W)
    positions : torch.Tensor, shape (neurons, 2) or (draws, neurons, 2)
    weights : torch.Tensor, shape (neurons, channels) or (draws, neurons, channels)
        With ``lags``: (..., neurons, K * channels), K blocks of ``channels``, one per bump.
    bias : torch.Tensor, shape (neurons,) or (draws, neurons)
    shift : torch.Tensor, shape (batch, 2), optional
    state : torch.Tensor, shape (batch, B), optional
        Behavioural state ``z_t`` of each trial; with ``state_weights``, the feature weights
        change with state, so that a neuron's selectivity (not only its gain) can depend on it.
    state_weights : torch.Tensor, shape (neurons, B, channels) or (draws, neurons, B, channels)
        With ``lags``: (..., K * channels) last.
    lags : torch.Tensor, shape (K, L), optional
        Bumps over the lags 0 .. L - 1 of frames: the batch is ``trials * frames`` maps (frames
        after trials), and each neuron's response is ``sum_k sum_l lags[k, l] (w_ik .
        F_{f-l}[p_i]) + beta_i``, the reads of its last L frames weighted by a time course of
        its own (zeros before a trial's first frame).
    frames : int, optional
        Frames per trial, with ``lags``.

    Returns
    -------
    torch.Tensor, shape (batch, neurons) or (draws, batch, neurons)
    """
    feats = read_features(features, positions, shift)  # (batch, C, [draws,] N)
    drawn = positions.dim() == 3
    k = ""
    if lags is not None:  # a bump axis k beside the channels
        k = "k"
        weights = weights.unflatten(-1, (lags.shape[0], -1))
        state_weights = None if state_weights is None else state_weights.unflatten(-1, (lags.shape[0], -1))
    if drawn:
        out = torch.einsum(f"bcdn,dn{k}c->dbn{k}", feats, weights)
    else:
        out = torch.einsum(f"bcn,n{k}c->bn{k}", feats, weights)
    if state_weights is not None:
        if drawn:  # contract behaviour first: (batch, C, draws, N) against (draws, batch, N, C)
            mixed = torch.einsum(f"bj,dnj{k}c->dbn{k}c", state, state_weights)
            out = out + torch.einsum(f"bcdn,dbn{k}c->dbn{k}", feats, mixed)
        else:
            mixed = torch.einsum(f"bj,nj{k}c->bn{k}c", state, state_weights)
            out = out + torch.einsum(f"bcn,bn{k}c->bn{k}", feats, mixed)
    if lags is not None:  # (..., trials * frames, N, K) -> (..., trials * frames, N), within each trial
        out = sum_over_lags(out.unflatten(-3, (-1, int(frames))), lags).flatten(-3, -2)
    return out + (bias[:, None, :] if drawn else bias)


class GaussianReadout(nn.Module):
    """Reads each neuron's feature vector at its position and weights it.

    ``response_i = w_i . F[p_i + shift] + beta_i``. The module holds point estimates
    (``positions``, ``weights``, ``bias``); a probabilistic twin passes sampled values instead.

    Parameters
    ----------
    n_neurons, channels : int

    Shapes
    ------
    features (batch, channels, H, W) -> (batch, neurons); with ``positions`` (draws, neurons, 2),
    ``weights`` (draws, neurons, channels), ``bias`` (draws, neurons): (draws, batch, neurons).

    Examples
    --------
    >>> readout = GaussianReadout(5, 8)
    >>> readout(torch.randn(3, 8, 10, 10)).shape
    torch.Size([3, 5])
    """

    def __init__(self, n_neurons: int, channels: int) -> None:
        super().__init__()
        self.positions = nn.Parameter(torch.zeros(n_neurons, 2))
        self.weights = nn.Parameter(torch.randn(n_neurons, channels) / channels)
        self.bias = nn.Parameter(torch.zeros(n_neurons))

    def forward(
        self,
        features: torch.Tensor,
        shift: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return readout_response(
            features,
            self.positions if positions is None else positions,
            self.weights if weights is None else weights,
            self.bias if bias is None else bias,
            shift,
        )


class PositionPredictor(nn.Module):
    """Prior mean of readout positions from cortical coordinates (retinotopy): a small MLP.

    neuralpredictors calls it ``grid_mean_predictor``. Output in (-1, 1) through ``tanh``.

    Parameters
    ----------
    in_features : int
        Coordinate dimensions (2 or 3).
    hidden : int
    layers : int

    Shapes
    ------
    coordinates (neurons, in_features), standardised -> (neurons, 2)
    """

    def __init__(self, in_features: int, hidden: int = 30, layers: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(mlp(in_features, hidden, layers, 2, nn.ELU), nn.Tanh())

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        return self.net(coordinates)
