"""In-silico temporal experiments on a video twin: the response to a flash, its latency, and the
latency of each neuron's temporal kernel read off its spatiotemporal receptive field."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from probtwin.errors import DataError
from probtwin.experiments._pairs import core_history
from probtwin.experiments.receptive_fields import receptive_fields
from probtwin.experiments.stimuli import StimulusSet, flashes
from probtwin.experiments.tuning import _check_stimuli, predicted_responses

__all__ = ["flash_response", "kernel_latency", "response_latency"]


def flash_response(
    twin: Any,
    stimuli: StimulusSet,
    frames: int = 20,
    num_samples: int = 50,
    seed: int = 0,
    session: Any = None,
    behavior: np.ndarray | None = None,
) -> xr.DataArray:
    """Posterior draws of each neuron's response over time to images flashed for one frame.

    Each image of ``stimuli`` is shown in frame 0, then the mean screen; the responses are
    averaged over the images and the response to the blank screen (the last frame, after the
    core's memory) is subtracted: the neuron's impulse response to the family.

    Parameters
    ----------
    twin : VideoTwin
    stimuli : StimulusSet
        Images, e.g. ``gratings(orientations, spatial_frequencies, twin=twin)``.
    frames : int
        Frames after the flash (at least the twin's temporal memory, so that the response
        returns to baseline).

    Returns
    -------
    xarray.DataArray, dims (sample, frame, neuron)
    """
    stimuli = _check_stimuli(stimuli)
    if stimuli.images.ndim != 4:
        raise DataError("stimuli", "a StimulusSet of images (flashed one frame each)", f"{stimuli}")
    movies = flashes(stimuli, frames)
    da = predicted_responses(twin, movies, behavior, num_samples, seed, session, frames="all")
    course = da.mean("stimulus")
    return (course - course.isel(frame=-1)).assign_coords(frame=np.arange(frames))


def response_latency(
    twin: Any,
    stimuli: StimulusSet,
    frames: int = 20,
    num_samples: int = 50,
    seed: int = 0,
    session: Any = None,
    behavior: np.ndarray | None = None,
) -> xr.DataArray:
    """Posterior draws of each neuron's latency: the frame after a flash at which its response
    (:func:`flash_response`) departs most from baseline.

    Returns
    -------
    xarray.DataArray, dims (sample, neuron), frames
    """
    course = flash_response(twin, stimuli, frames, num_samples, seed, session, behavior)
    return abs(course).argmax("frame").astype(float)


def kernel_latency(
    twin: Any,
    movies: np.ndarray | None = None,
    lags: int | None = None,
    num_samples: int = 20,
    seed: int = 0,
    session: Any = None,
    neurons: Any = None,
) -> xr.DataArray:
    """Posterior draws of each neuron's temporal-kernel latency: the lag at which its
    spatiotemporal receptive field is strongest.

    For draw ``s`` and neuron ``i`` the energy of the receptive field at lag ``tau`` is

        E_si(tau) = mean_m sum_{c,y,x} (d mu_i(T; theta_s) / d x_m(T - tau, c, y, x))^2,

    the gradient of the response at the last frame ``T`` of movie ``m`` (its last ``lags``
    frames; :func:`~probtwin.experiments.receptive_fields`), averaged over the movies; the latency
    is its peak, located between frames by a parabola through the peak and its neighbours. At
    natural movies a complex (energy) cell has a gradient too, which it lacks at a blank screen.
    Each draw's latency is one member's; where the members combine as ``"student"`` (an
    ensemble) the latencies are then combined over the members
    (:meth:`~probtwin.twins.posterior.WholeTwinPosterior.statistic_draws`).

    Parameters
    ----------
    twin : VideoTwin
    movies : numpy.ndarray, shape (n, C, frames, H, W), optional
        Where the gradients are taken (their last ``lags`` frames). Default: the first 8 train
        movies of the twin's recording (the ``lags`` frames before each one's end), or the blank
        screen when it holds none (a loaded twin) or none is long enough.
    lags : int, optional
        Default: the twin's history + 1 (its core's and readout's lags).
    num_samples, seed, session, neurons
        As :func:`~probtwin.experiments.receptive_fields`.

    Returns
    -------
    xarray.DataArray, dims (sample, neuron), frames
    """
    k = twin.session_index(session)
    span = core_history(twin) + 1 if lags is None else lags
    if int(span) != span or span < 1:
        raise DataError("lags", "a positive number of frames", repr(lags))
    at: list = [None]  # the blank screen
    if movies is not None:
        movies = np.asarray(movies, dtype=np.float32)
        if movies.ndim != 5 or movies.shape[2] < span or not np.isfinite(movies).all():
            found = f"shape {movies.shape}" + ("" if np.isfinite(movies).all() else ", with NaN or inf")
            raise DataError("movies", f"finite movies (n, C, frames >= {span}, H, W)", found)
        at = list(movies[:, :, movies.shape[2] - span :])
    elif k < len(twin.recordings):  # the last recorded frames of the first train movies
        train = twin.recordings[k].split("train")
        n = min(8, train.n_trials)
        ends = train.frame_counts[:n]
        at = [m[:, end - span : end] for m, end in zip(np.asarray(train.stimuli[:n]), ends) if end >= span] or at
    energy = 0.0
    with twin.statistic_draws(num_samples, seed) as combine:  # a peak: combined over the members as itself
        for movie in at:
            rf = receptive_fields(twin, "gradient", num_samples, seed, session, neurons=neurons, at=movie, lags=span)
            energy = energy + (rf**2).sum(("channel", "y", "x")).transpose("sample", "neuron", "lag")
    coords = {dim: energy.coords[dim] for dim in ("sample", "neuron")}
    latency = combine(_peak(energy.values)[..., 0])
    return xr.DataArray(latency, dims=("sample", "neuron"), coords=coords, name="latency")


def _peak(values: np.ndarray) -> np.ndarray:
    """Where each profile (..., lags) peaks, between frames: the vertex of the parabola through
    the largest value and its neighbours (the frame itself at either end), shape (..., 1)."""
    top = values.argmax(-1)
    if values.shape[-1] < 3:
        return top[..., None].astype(float)
    centre = top.clip(1, values.shape[-1] - 2)
    a, b, c = (np.take_along_axis(values, (centre + d)[..., None], -1)[..., 0] for d in (-1, 0, 1))
    curvature = a - 2 * b + c
    inside = (top == centre) & (curvature < 0)
    offset = np.where(inside, 0.5 * (a - c) / np.where(inside, curvature, -1.0), 0.0)
    return (top + offset)[..., None]
