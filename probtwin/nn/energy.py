"""Contrast-energy receptive-field maps: where in the image each neuron's responses follow the
local contrast. Used to start readout positions near the receptive fields."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch.nn import functional as F

__all__ = ["contrast_energy", "energy_rf_centres", "energy_rf_start", "gaze_energy_centres"]


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


def energy_rf_centres(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    sigma: float | Sequence[float] = (2.0, 3.0, 4.0),
    lags: int = 1,
) -> torch.Tensor:
    """Pixel where each neuron's response correlates best with local contrast energy: the
    centres of :func:`energy_rf_start` (same parameters), shape (neurons, 2), (x, y) in pixels."""
    return energy_rf_start(batches, sigma, lags)[0]


def energy_rf_start(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    sigma: float | Sequence[float] = (2.0, 3.0, 4.0),
    lags: int = 1,
    linear: bool = False,
) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Pixel where each neuron's response correlates best with local contrast energy, and the
    energy's scale that fits the population best (a starting receptive-field size).

    Parameters
    ----------
    batches : iterable of (stimuli, responses)
        The training trials, in chunks: images (n, C, H, W) with responses (n, neurons), or
        videos (n, C, frames, H, W) with responses (n, frames, neurons).
    sigma : float or sequence of float
        Scale of the energy (pixels). Of several, the one whose peak correlation is highest
        for the median neuron (the scale of the population's receptive fields; on simulated
        V1 of 36 x 64 pixels, 3-4 pixels place fields half as far from the truth as 2).
    lags : int
        Videos: the energy of frame t - l is paired with the response of frame t for each lag
        l < ``lags``, and each neuron takes its best (lag, pixel) (its latency is unknown).
    linear : bool
        Also the grey image itself, blurred at each scale, as a map whose correlation (in
        absolute value) may place a neuron: sparse probes (one lit place a frame) drive a field
        linearly, and a probe's contrast energy, a ring around it, peaks beside a field one
        place wide. Each neuron takes its best (kind, lag, pixel) at the chosen scale.

    Returns
    -------
    centres : torch.Tensor, shape (neurons, 2)
        (x, y) in pixels.
    scale : float
        The chosen ``sigma`` (pixels).
    strength : torch.Tensor, shape (neurons,)
        Each neuron's peak correlation at that scale times the square root of the number of
        (energy, response) pairs: about a standard normal's maximum over the places and lags
        where the responses do not follow the energy (near 3.4 for 81 places and 20 lags), larger
        where they do.
    """
    scales = (float(sigma),) if torch.as_tensor(sigma).ndim == 0 else tuple(float(s) for s in sigma)
    sums: dict[tuple[int, int], dict] = {}
    for stimuli, responses in batches:
        frames = stimuli.shape[2] if stimuli.dim() == 5 else 1
        grey = stimuli.transpose(1, 2).flatten(0, 1) if stimuli.dim() == 5 else stimuli
        responses = responses if stimuli.dim() == 5 else responses[:, None]
        for s, scale in enumerate(scales):
            maps = {"energy": contrast_energy(grey, scale)}
            if linear:
                maps["linear"] = _gaussian_blur(grey.mean(dim=1, keepdim=True), scale)[:, 0]
            for kind, m in maps.items():
                m = m.unflatten(0, (len(stimuli), frames))
                height, width = m.shape[-2:]
                for lag in range(min(lags, frames)):
                    e = m[:, : frames - lag].flatten(2).flatten(0, 1)  # (n * frames, HW)
                    _accumulate(sums.setdefault((s, kind, lag), {}), e, responses[:, lag:].flatten(0, 1))
    corr = torch.stack(
        [_correlation(acc).abs() if key[1] == "linear" else _correlation(acc) for key, acc in sums.items()]
    )
    corr = corr.unflatten(0, (len(scales), -1)).flatten(1, 2)  # (scales, kinds * lags * HW, neurons)
    peak, best = corr.max(dim=1)  # (scales, neurons)
    scale = peak.quantile(0.5, dim=1).argmax()  # the median neuron (of an even number: between the middle two)
    best = best[scale] % (height * width)
    strength = (peak[scale] * math.sqrt(sums[(int(scale), "energy", 0)]["n"])).float()
    return torch.stack([best % width, best // width], dim=1).float(), scales[int(scale)], strength


def _accumulate(acc: dict, e: torch.Tensor, y: torch.Tensor) -> None:
    """Add (samples, places) energies ``e`` and (samples, neurons) responses ``y`` to running sums."""
    e, y = e.double(), y.double()
    acc["n"] = acc.get("n", 0) + len(e)
    for key, value in (("e", e.sum(0)), ("e2", (e**2).sum(0)), ("y", y.sum(0)), ("y2", (y**2).sum(0)), ("ey", e.T @ y)):
        acc[key] = acc.get(key, 0) + value


def gaze_energy_centres(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], reach: int, sigma: float = 2.0
) -> dict[str, torch.Tensor]:
    """Where each neuron's per-frame responses follow the local contrast energy best: at an
    eye-centred offset from gaze, or at a fixed place in the scene the same offset from its
    centre.

    Parameters
    ----------
    batches : iterable of (scenes, gaze, responses)
        Scenes (n, C, H, W), gaze (n, frames, 2) in scene pixels (x, y), responses
        (n, frames, neurons).
    reach : int
        Offsets tried: every integer (dx, dy) with ``|dx|, |dy| <= reach`` pixels.
    sigma : float

    Returns
    -------
    dict of str to torch.Tensor
        ``offset`` (neurons, 2) pixels and ``offset_correlation`` (neurons,): the best
        eye-centred offset; ``place`` (neurons, 2) and ``place_correlation``: the best fixed
        place, as an offset from the scene's centre.
    """
    eye: dict = {}
    scene: dict = {}
    steps = torch.arange(-reach, reach + 1, dtype=torch.float32)
    offsets = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), -1).reshape(-1, 2)  # (O, 2) x, y
    for scenes, gaze, responses in batches:
        energy = contrast_energy(scenes, sigma)[:, None]  # (n, 1, H, W)
        n, _, height, width = energy.shape
        size = torch.tensor([width - 1, height - 1], dtype=gaze.dtype, device=gaze.device)
        where = gaze[:, :, None, :] + offsets.to(gaze)  # (n, frames, O, 2)
        read = F.grid_sample(energy, 2 * where / size - 1, align_corners=True)[:, 0]  # (n, frames, O)
        fixed = (size / 2 + offsets.to(gaze)).expand(n, 1, -1, -1)  # (n, 1, O, 2)
        still = F.grid_sample(energy, 2 * fixed / size - 1, align_corners=True)[:, 0]  # (n, 1, O)
        y = responses.flatten(0, 1)
        _accumulate(eye, read.flatten(0, 1), y)
        _accumulate(scene, still.expand_as(read).flatten(0, 1), y)
    best_eye, best_scene = _correlation(eye).max(dim=0), _correlation(scene).max(dim=0)
    return {
        "offset": offsets[best_eye.indices],
        "offset_correlation": best_eye.values.float(),
        "place": offsets[best_scene.indices],
        "place_correlation": best_scene.values.float(),
    }


def _correlation(acc: dict) -> torch.Tensor:
    """Correlation (HW, neurons) of energy and responses from their running sums."""
    n = acc["n"]
    cov = acc["ey"] / n - torch.outer(acc["e"] / n, acc["y"] / n)
    sd_e = (acc["e2"] / n - (acc["e"] / n) ** 2).clamp_min(1e-12).sqrt()
    sd_y = (acc["y2"] / n - (acc["y"] / n) ** 2).clamp_min(1e-12).sqrt()
    return cov / sd_e[:, None] / sd_y[None, :]
