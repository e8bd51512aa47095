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

__all__ = ["bumps", "causal_filter", "lag_basis", "pooling_pyramid", "read_gaussian", "read_pooled", "sum_over_lags"]


def _sampled_gaussian(offsets: torch.Tensor, size: torch.Tensor, reach: int) -> torch.Tensor:
    """Weights ``exp(-d^2 / 2 r^2)`` at ``offsets`` d (size's shape + (n,)), normalised by the
    sampled Gaussian's sum over the integers within ``reach`` (the whole line, for a reach of
    several sd): the pooling of the pyramid and of the direct read alike."""
    k = torch.arange(-reach, reach + 1, dtype=size.dtype, device=size.device)
    norm = torch.exp(-(k**2) / (2 * size[..., None] ** 2)).sum(-1)
    return torch.exp(-(offsets**2) / (2 * size[..., None] ** 2)) / norm[..., None]


def _blur_matrices(n: int, sizes: torch.Tensor) -> torch.Tensor:
    """(levels, n, n) matrices of a Gaussian blur along one axis of n pixels, zero outside."""
    d = torch.arange(n, dtype=sizes.dtype, device=sizes.device)
    reach = int(math.ceil(6 * float(sizes.max()))) + n
    offsets = (d[:, None] - d[None, :]).reshape(1, -1)
    return _sampled_gaussian(offsets, sizes[:, None], reach).reshape(-1, n, n)


def pooling_pyramid(features: torch.Tensor, levels: int, min_size: float) -> torch.Tensor:
    """Feature maps blurred by Gaussians of sd ``min_size * 2**l`` pixels, l = 0..levels-1
    (zero outside the map), separably: one matrix product per axis and level.

    Shapes
    ------
    features (batch, C, H, W) -> (batch, C, levels, H, W)
    """
    h, w = features.shape[-2:]
    sizes = min_size * 2.0 ** torch.arange(levels, device=features.device, dtype=features.dtype)
    rows, cols = _blur_matrices(h, sizes), _blur_matrices(w, sizes)  # (levels, H, H), (levels, W, W)
    across = torch.einsum("bchw,lvw->bclhv", features, cols)
    return torch.einsum("lyh,bclhv->bclyv", rows, across)


def read_pooled(
    pyramid: torch.Tensor,
    positions: torch.Tensor,
    log2_size: torch.Tensor,
    min_size: float,
    blend: str = "variance",
) -> torch.Tensor:
    """Each trial's pyramid at positions and sizes, bilinear in space and blending the two
    levels around each size (zero outside the map; sizes beyond the pyramid read its first or
    last level).

    Parameters
    ----------
    pyramid : torch.Tensor, shape (trials, C, levels, H, W)
    positions : torch.Tensor, shape (trials, P, 2)
        (x, y) in pixels of the map (pixel centres at integers).
    log2_size : torch.Tensor, shape (trials, P)
        log2 of the pooling sd in pixels.
    min_size : float
        The pyramid's first level.
    blend : {"variance", "log"}
        The weight on the upper level when a size s lies between the levels a_l and
        a_(l+1) = 2 a_l. ``"variance"``: (s^2 - a_l^2) / (a_(l+1)^2 - a_l^2), so that the
        pooling's variance is s^2 at every size, as at the levels; ``"log"``: log2(s / a_l),
        linear in log size (the pooling's sd up to 12% above s between levels).

    Returns
    -------
    torch.Tensor, shape (trials, C, P)
    """
    if blend not in ("variance", "log"):
        raise ValueError(f"blend: 'variance' or 'log', not {blend!r}")
    levels, h, w = pyramid.shape[-3:]
    x = 2 * positions[..., 0] / (w - 1) - 1
    y = 2 * positions[..., 1] / (h - 1) - 1
    level = (log2_size - math.log2(min_size)).clamp(0, levels - 1)  # l + log2(s / a_l)
    if blend == "variance" and levels > 1:
        below = level.detach().floor().clamp(max=levels - 2)
        level = below + (4.0 ** (level - below) - 1) / 3
    z = 2 * level / max(levels - 1, 1) - 1
    grid = torch.stack([x, y, z], dim=-1)[:, :, None, None, :]  # (trials, P, 1, 1, 3)
    out = F.grid_sample(pyramid, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[..., 0, 0]


def read_gaussian(
    features: torch.Tensor, positions: torch.Tensor, log2_size: torch.Tensor, min_size: float, levels: int
) -> torch.Tensor:
    """Each map pooled by a Gaussian of sd ``2 ** log2_size`` at each position, directly (no
    pyramid), sizes clamped to those of the pyramid of ``levels`` levels from ``min_size``: at
    the levels the pooling of :func:`read_pooled`, between them one Gaussian where the pyramid
    blends two (of the same variance with ``blend="variance"``); cheaper where each map is read
    at fewer places than the pyramid costs (a map per frame, a few neurons).

    Parameters
    ----------
    features : torch.Tensor, shape (batch, C, H, W)
    positions : torch.Tensor, shape (batch, P, 2)
        (x, y) in pixels.
    log2_size : torch.Tensor, shape (batch, P)
    min_size : float
    levels : int

    Returns
    -------
    torch.Tensor, shape (batch, C, P)
    """
    h, w = features.shape[-2:]
    low = math.log2(min_size)
    size = 2.0 ** log2_size.clamp(low, low + levels - 1)  # (batch, P)
    reach = int(math.ceil(6 * min_size * 2 ** (levels - 1))) + max(h, w)

    def along(n: int, x: torch.Tensor) -> torch.Tensor:  # (batch, P, n)
        return _sampled_gaussian(torch.arange(n, dtype=x.dtype, device=x.device) - x[..., None], size, reach)

    across = torch.einsum("bchw,bpw->bchp", features, along(w, positions[..., 0]))
    return torch.einsum("bchp,bph->bcp", across, along(h, positions[..., 1]))


def bumps(x: torch.Tensor, centres: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussian bumps ``exp(-(x - c_k)^2 / (2 width^2))`` of ``x`` (any shape) -> (..., K); 0 at
    infinite ``x`` (no saccade)."""
    return torch.exp(-((x[..., None] - centres) ** 2) / (2 * width**2))


def lag_basis(lags: int, n_basis: int) -> torch.Tensor:
    """Gaussian bumps over the lags 0 .. ``lags - 1`` frames, centres evenly spaced from 0 to
    ``lags - 1``, width 0.75 of their spacing (one bump: centred at 0, width 0.75 ``lags``).

    Returns
    -------
    torch.Tensor, shape (n_basis, lags)
    """
    spacing = (lags - 1) / (n_basis - 1) if n_basis > 1 else float(lags)
    centres = torch.linspace(0, lags - 1, n_basis) if n_basis > 1 else torch.zeros(1)
    return bumps(torch.arange(lags, dtype=torch.float32), centres, max(0.75 * spacing, 0.5)).T


def causal_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each series filtered causally over its last axis: ``out_f = sum_l kernel_l x_{f-l}``.

    Shapes
    ------
    x (S, G, F), kernel (G, L) -> (S, G, F): S series of G groups, each group its own kernel
    """
    lags = kernel.shape[-1]
    return F.conv1d(F.pad(x, (lags - 1, 0)), kernel.flip(-1)[:, None], groups=kernel.shape[0])


def sum_over_lags(drive: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
    """Drives weighted per bump, each filtered causally over the frames by its bump and summed
    over the bumps: ``out_f = sum_k sum_l lags[k, l] drive_{f-l, k}`` (zeros before the first
    frame), a neuron's reads of its past frames under a time course of its own.

    Shapes
    ------
    drive (..., F, N, K), lags (K, L) -> (..., F, N)
    """
    frames = drive.shape[-3]
    per_lag = torch.einsum("...fnk,kl->...lfn", drive, lags.to(drive))  # sum_k phi_k(l) drive_k(f)
    out = per_lag[..., 0, :, :]
    for lag in range(1, min(lags.shape[1], frames)):  # out(f) += per_lag(l, f - l)
        out = out + F.pad(per_lag[..., lag, :-lag, :], (0, 0, lag, 0))
    return out
