"""Activations of (posterior draw, neuron) pairs, one image (or movie) each, differentiable in
the images."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probtwin.infer import query as q
from probtwin.infer.progress import progress

_MAX_ELEMENTS = 2**24  # working-set bound (floats) of one chunk of pairs


def pair_chunks(twin: Any, k: int, n_draws: int, n_pairs: int, per_draw: int, frames: int = 1):
    """Slices of pairs (ordered draw-major, ``per_draw`` pairs a draw) whose evaluation under the
    draws they span stays under the working-set bound (``frames``: of each pair's movie)."""
    per_pair = frames * twin.specs[k].n_neurons * (twin._elements_per_neuron(k) + twin.noise[k].elements)
    size = n_pairs
    while size > 1 and (size // max(per_draw, 1) + 2) * size * per_pair > _MAX_ELEMENTS:
        size //= 2
    for start in progress(range(0, n_pairs, size), "experiment", unit="chunk"):
        yield slice(start, min(start + size, n_pairs))


def paired_activation(
    twin: Any,
    k: int,
    images: torch.Tensor,
    draws: Any,
    draw_of: torch.Tensor,
    neuron_of: torch.Tensor,
    behavior: np.ndarray | None = None,
    scored: slice | None = None,
) -> torch.Tensor:
    """Mean response of neuron ``neuron_of[j]`` under posterior draw ``draw_of[j]`` to image ``j``;
    to movie ``j`` (pairs, C, frames, H, W) of a video twin, averaged over the ``scored`` frames
    (default: all).

    Only the draws the pairs use are evaluated.

    Returns
    -------
    torch.Tensor, shape (pairs,)
    """
    used, which = torch.unique(draw_of, return_inverse=True)
    subset = q.take_draws(twin.query(), draws, used)
    if isinstance(subset, q.MixtureDraws):  # each pair is one member's draw: a combination would need
        subset.weights = None  # every member's response to the pair's image (probtwin.infer.mixture)
    mean = twin._mean_of_images(k, images, subset, behavior)  # (used draws, pairs, neurons)
    rows = torch.arange(len(images), device=mean.device)
    if mean.dim() == 4:  # movies: (draws, pairs, frames, neurons)
        per_frame = mean[which.to(mean.device), rows, :, neuron_of.to(mean.device)]  # (pairs, frames)
        return per_frame[:, scored if scored is not None else slice(None)].mean(-1)
    return mean[which.to(mean.device), rows, neuron_of.to(mean.device)]


def core_history(twin: Any) -> int:
    """Frames of the past a video twin's response sees at each frame, its core's and its
    readout's lags together (0 for images)."""
    return int(getattr(twin, "past_frames", getattr(twin.core, "history", 0)))
