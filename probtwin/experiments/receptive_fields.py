"""In-silico receptive fields: sparse-noise maps and gradients, per posterior draw."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from probtwin.errors import DataError
from probtwin.experiments._pairs import pair_chunks, paired_activation
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
        a blank screen), per channel and pixel, response per pixel unit.
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
    at : numpy.ndarray, shape (C, H, W), optional
        Where the gradient is taken.

    Returns
    -------
    xarray.DataArray
        ``"sparse_noise"``: dims (sample, neuron, y, x), coordinates the squares' centres in
        pixels; ``"gradient"``: dims (sample, neuron, channel, y, x). Neuron ids as coordinates.
    """
    if method not in METHODS:
        raise DataError("method", f"one of {METHODS}", repr(method))
    k = twin.session_index(session)
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
    shape = twin.specs[k].stimulus_shape
    if at is None:
        at = np.broadcast_to(getattr(twin, f"stim_mean_{k}").cpu().numpy()[:, None, None], shape)
    at = np.asarray(at, dtype=np.float32)
    if list(at.shape) != list(shape):
        raise DataError("at", f"one image of shape {tuple(shape)}", f"shape {at.shape}")
    draws = twin._posterior_draws(k, num_samples, seed)
    draw_of = torch.as_tensor(np.repeat(np.arange(num_samples), len(index)))
    neuron_of = torch.as_tensor(np.tile(index, num_samples))
    out = np.empty((len(draw_of), *shape), dtype=np.float32)
    base = torch.as_tensor(np.array(at), device=twin.device)
    for sl in pair_chunks(twin, k, num_samples, len(draw_of), len(index)):
        images = base.expand(sl.stop - sl.start, *shape).clone().requires_grad_(True)
        activation = paired_activation(twin, k, images, draws, draw_of[sl], neuron_of[sl], behavior)
        (grad,) = torch.autograd.grad(activation.sum(), images)
        out[sl] = grad.detach().cpu().numpy()
    height, width = shape[1:]
    coords = {
        "sample": np.arange(num_samples),
        "neuron": ids,
        "channel": np.arange(shape[0]),
        "y": np.arange(height, dtype=float),
        "x": np.arange(width, dtype=float),
    }
    values = out.reshape(num_samples, len(index), *shape)
    return xr.DataArray(values, dims=("sample", "neuron", "channel", "y", "x"), coords=coords, name="receptive_field")
