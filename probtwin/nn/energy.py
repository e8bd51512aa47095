"""Contrast-energy receptive-field maps: where in the image each neuron's responses follow the
local contrast. Used to start readout positions near the receptive fields."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.nn import functional as F

__all__ = ["contrast_energy", "energy_rf_centres"]


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.reshape(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.reshape(1, 1, -1, 1))


def contrast_energy(images: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Local contrast energy: the blurred square of the band-passed grey image.

    Parameters
    ----------
    images : torch.Tensor, shape (n, channels, H, W)
    sigma : float
        Scale (pixels) of the band-pass and of the pooling.

    Returns
    -------
    torch.Tensor, shape (n, H, W)
    """
    grey = images.mean(dim=1, keepdim=True)
    band = grey - _gaussian_blur(grey, sigma)
    return _gaussian_blur(band**2, sigma)[:, 0]


def energy_rf_centres(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], sigma: float = 2.0) -> torch.Tensor:
    """Pixel where each neuron's response correlates best with local contrast energy.

    Parameters
    ----------
    batches : iterable of (images (n, C, H, W), responses (n, neurons))
        The training trials, in chunks.
    sigma : float

    Returns
    -------
    torch.Tensor, shape (neurons, 2)
        (x, y) in pixels.
    """
    sums = None
    for images, responses in batches:
        e = contrast_energy(images, sigma).flatten(1).double()  # (n, HW)
        y = responses.reshape(len(responses), -1).double()
        if sums is None:
            height, width = images.shape[-2:]
            sums = {"n": 0, "e": 0, "e2": 0, "y": 0, "y2": 0, "ey": 0}
        sums["n"] += len(e)
        sums["e"] = sums["e"] + e.sum(0)
        sums["e2"] = sums["e2"] + (e**2).sum(0)
        sums["y"] = sums["y"] + y.sum(0)
        sums["y2"] = sums["y2"] + (y**2).sum(0)
        sums["ey"] = sums["ey"] + e.T @ y
    n = sums["n"]
    cov = sums["ey"] / n - torch.outer(sums["e"] / n, sums["y"] / n)
    sd_e = (sums["e2"] / n - (sums["e"] / n) ** 2).clamp_min(1e-12).sqrt()
    sd_y = (sums["y2"] / n - (sums["y"] / n) ** 2).clamp_min(1e-12).sqrt()
    corr = cov / sd_e[:, None] / sd_y[None, :]  # (HW, neurons)
    best = corr.argmax(dim=0)
    return torch.stack([best % width, best // width], dim=1).float()
