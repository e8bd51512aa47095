"""In-silico temporal experiments on a video twin: the response to a flash and its latency."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from probtwin.errors import DataError
from probtwin.experiments.stimuli import StimulusSet, flashes
from probtwin.experiments.tuning import _check_stimuli, predicted_responses

__all__ = ["flash_response", "response_latency"]


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
