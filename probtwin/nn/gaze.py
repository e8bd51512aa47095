"""Reading a scene's feature maps where the eye puts each receptive field, pooled over a
neuron's receptive-field size.

A core is translation-equivariant, so the features of the retinal image (the scene resampled
around gaze) are the scene's features resampled around gaze: the core runs once per scene, and
each neuron reads the scene's feature map at its receptive field's place in the scene,
``g_t + o_i``, for every frame. Pooling over a Gaussian of sd ``r_i`` is read off a pyramid of
the feature maps blurred at sizes ``r_0 2^l``: trilinear interpolation in (x, y, log2 r), so
that both the place and the size are differentiable.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["bumps", "pooling_pyramid", "read_pooled"]


def pooling_pyramid(features: torch.Tensor, levels: int, min_size: float) -> torch.Tensor:
    """Feature maps blurred by Gaussians of sd ``min_size * 2**l`` pixels, l = 0..levels-1
    (zero outside the map: the blur runs on a map padded with zeros to twice its size).

    Shapes
    ------
    features (batch, C, H, W) -> (batch, C, levels, H, W)
    """
    h, w = features.shape[-2:]
    spectrum = torch.fft.rfft2(features, s=(2 * h, 2 * w))  # (batch, C, 2H, W + 1)
    fy = torch.fft.fftfreq(2 * h, device=features.device)[:, None]
    fx = torch.fft.rfftfreq(2 * w, device=features.device)[None, :]
    sizes = min_size * 2.0 ** torch.arange(levels, device=features.device, dtype=features.dtype)
    transfer = torch.exp(-2 * math.pi**2 * sizes[:, None, None] ** 2 * (fx**2 + fy**2))  # (levels, 2H, W + 1)
    blurred = torch.fft.irfft2(spectrum[:, :, None] * transfer, s=(2 * h, 2 * w))
    return blurred[..., :h, :w]


def read_pooled(
    pyramid: torch.Tensor, positions: torch.Tensor, log2_size: torch.Tensor, min_size: float
) -> torch.Tensor:
    """Each trial's pyramid at positions and sizes, trilinear (zero outside the map; sizes beyond
    the pyramid read its first or last level).

    Parameters
    ----------
    pyramid : torch.Tensor, shape (trials, C, levels, H, W)
    positions : torch.Tensor, shape (trials, P, 2)
        (x, y) in pixels of the map (pixel centres at integers).
    log2_size : torch.Tensor, shape (trials, P)
        log2 of the pooling sd in pixels.
    min_size : float
        The pyramid's first level.

    Returns
    -------
    torch.Tensor, shape (trials, C, P)
    """
    levels, h, w = pyramid.shape[-3:]
    x = 2 * positions[..., 0] / (w - 1) - 1
    y = 2 * positions[..., 1] / (h - 1) - 1
    z = (2 * (log2_size - math.log2(min_size)) / max(levels - 1, 1) - 1).clamp(-1, 1)
    grid = torch.stack([x, y, z], dim=-1)[:, :, None, None, :]  # (trials, P, 1, 1, 3)
    out = F.grid_sample(pyramid, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[..., 0, 0]


def bumps(x: torch.Tensor, centres: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussian bumps ``exp(-(x - c_k)^2 / (2 width^2))`` of ``x`` (any shape) -> (..., K); 0 at
    infinite ``x`` (no saccade)."""
    return torch.exp(-((x[..., None] - centres) ** 2) / (2 * width**2))
