"""In-silico receptive fields: sparse-noise maps and gradients (spatiotemporal for a video
twin), per posterior draw."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from probtwin.errors import DataError
from probtwin.experiments._pairs import core_history, pair_chunks, paired_activation
from probtwin.experiments.stimuli import sparse_noise
from probtwin.experiments.tuning import predicted_responses

__all__ = ["receptive_fields"]

METHODS = ("sparse_noise", "gradient")


def _neurons(twin: Any, k: int, neurons: Any, field: str = "neurons") -> np.ndarray:
    """Positions of the chosen neurons (all for None), checked."""
    n = twin.specs[k].n_neurons
    if neurons is None:
        return np.arange(n)
    index = np.atleast_1d(np.asarray(neurons))
    if index.ndim != 1 or index.dtype.kind not in "iu" or len(index) == 0:
        raise DataError(field, "a list of neuron indices (positions, not ids)", repr(neurons))
    if index.min() < 0 or index.max() >= n:
        raise DataError(field, f"indices in [0, {n})", f"{index.tolist()[:10]}")
    return index


def receptive_fields(
    twin: Any,
    method: str = "sparse_noise",
    num_samples: int = 20,
    seed: int = 0,
    session: Any = None,
    behavior: np.ndarray | None = None,
    neurons: Any = None,
    block: int = 2,
    contrast: float = 3.0,
    at: np.ndarray | None = None,
    lags: int | None = None,
) -> xr.DataArray:
    """Receptive-field maps of every neuron under posterior draws.

    Parameters
    ----------
    twin : Twin
    method : {"sparse_noise", "gradient"}
        ``"sparse_noise"``: half the difference between the responses to a bright and a dark
        square at each position (:func:`~probtwin.experiments.sparse_noise`), the linear
        receptive field a sparse-noise experiment measures, response units.
        ``"gradient"``: ``d mu_i / d x`` at the image ``at`` (default: the mean training image,
        a blank screen), per channel and pixel, response per pixel unit. For a video twin the
        spatiotemporal receptive field: ``d mu_i(t) / d x(t - lag)`` of the response at the
        last frame of a movie ``at`` of ``lags`` frames, per lag (only ``"gradient"``).
    num_samples : int
        Posterior draws.
    seed : int
    session : optional
    behavior : numpy.ndarray, shape (1, B), optional
        The state (default: the average).
    neurons : array_like of int, optional
        Neuron indices (default: all).
    block, contrast : int, float
        Sparse-noise square side (pixels) and contrast (pixel standard deviations).
    at : numpy.ndarray, shape (C, H, W), or (C, lags, H, W) for a video twin, optional
        Where the gradient is taken.
    lags : int, optional
        Video twins: frames of the movie, the response frame included (default: the twin's
        history + 1, its core's and readout's lags, every frame the response can depend on).

    Returns
    -------
    xarray.DataArray
        ``"sparse_noise"``: dims (sample, neuron, y, x), coordinates the squares' centres in
        pixels; ``"gradient"``: dims (sample, neuron, channel, y, x), for a video twin
        (sample, neuron, channel, lag, y, x), ``lag`` the frames before the response. Neuron ids
        as coordinates.
    """
    if method not in METHODS:
        raise DataError("method", f"one of {METHODS}", repr(method))
    k = twin.session_index(session)
    video = len(twin.specs[k].stimulus_shape) == 4
    if video and method != "gradient":
        raise DataError("method", "'gradient' for a video twin (its spatiotemporal receptive field)", repr(method))
    index = _neurons(twin, k, neurons)
    ids = np.asarray(twin.specs[k].neuron_ids)[index]
    if method == "sparse_noise":
        stimuli = sparse_noise(block, twin=twin, session=k, contrast=contrast)
        da = predicted_responses(twin, stimuli, behavior, num_samples, seed, k).isel(neuron=index)
        table = stimuli.parameters
        on, off = (np.flatnonzero(table["polarity"].to_numpy() == p) for p in (1, -1))
        ys, xs = np.unique(table["y"]), np.unique(table["x"])
        diff = (da.values[:, on] - da.values[:, off]) / 2  # on and off alternate at each position
        values = diff.reshape(num_samples, len(ys), len(xs), len(index)).transpose(0, 3, 1, 2)
        coords = {"sample": np.arange(num_samples), "neuron": ids, "y": ys, "x": xs}
        return xr.DataArray(values, dims=("sample", "neuron", "y", "x"), coords=coords, name="receptive_field")
    shape = tuple(twin.specs[k].stimulus_shape)
    if video:
        lags = core_history(twin) + 1 if lags is None else lags
        if int(lags) != lags or lags < 1:
            raise DataError("lags", "a positive number of frames", repr(lags))
        shape = (shape[0], int(lags), *shape[2:])
    elif lags is not None:
        raise DataError("lags", "None for an image twin", repr(lags))
    if at is None:
        mean = getattr(twin, f"stim_mean_{k}").cpu().numpy()
        at = np.broadcast_to(mean.reshape(-1, *[1] * (len(shape) - 1)), shape)
    at = np.asarray(at, dtype=np.float32)
    if list(at.shape) != list(shape):
        raise DataError("at", f"one {'movie' if video else 'image'} of shape {shape}", f"shape {at.shape}")
    draws = twin._posterior_draws(k, num_samples, seed)
    draw_of = torch.as_tensor(np.repeat(np.arange(num_samples), len(index)))
    neuron_of = torch.as_tensor(np.tile(index, num_samples))
    out = np.empty((len(draw_of), *shape), dtype=np.float32)
    base = torch.as_tensor(np.array(at), device=twin.device)
    last = slice(-1, None) if video else None  # a movie's response at its last frame
    frames = shape[1] if video else 1
    for sl in pair_chunks(twin, k, num_samples, len(draw_of), len(index), frames):
        images = base.expand(sl.stop - sl.start, *shape).clone().requires_grad_(True)
        activation = paired_activation(twin, k, images, draws, draw_of[sl], neuron_of[sl], behavior, last)
        (grad,) = torch.autograd.grad(activation.sum(), images)
        out[sl] = grad.detach().cpu().numpy()
    height, width = shape[-2:]
    coords = {
        "sample": np.arange(num_samples),
        "neuron": ids,
        "channel": np.arange(shape[0]),
        "y": np.arange(height, dtype=float),
        "x": np.arange(width, dtype=float),
    }
    values = out.reshape(num_samples, len(index), *shape)
    dims = ("sample", "neuron", "channel", "y", "x")
    if video:  # frames before the response: lag 0 is the response's own frame
        values = np.flip(values, axis=3)
        coords["lag"] = np.arange(shape[1])
        dims = ("sample", "neuron", "channel", "lag", "y", "x")
    return xr.DataArray(values, dims=dims, coords=coords, name="receptive_field")
