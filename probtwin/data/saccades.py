"""Saccades in a gaze trace: their onsets, the time from each frame to the nearest onset, and
each saccade's vector.

A saccade is a run of frames over which the eye moves more than ``threshold`` (pixels) from one
frame to the next: its onset is the first frame of the run (the first frame seen from the new
position), its vector the landing position (the run's last frame) minus the position before
the run. One definition serves the free-viewing simulator's truth and the gaze twin's
covariates.
"""

from __future__ import annotations

import numpy as np

from probtwin.data.validation import describe
from probtwin.errors import DataError

__all__ = ["saccade_covariates"]


def saccade_covariates(gaze: np.ndarray, threshold: float = 2.0) -> dict[str, np.ndarray]:
    """Peri-saccadic covariates of every frame of every trial.

    Parameters
    ----------
    gaze : numpy.ndarray, shape (trials, frames, 2)
        Eye position (x, y) per frame, pixels.
    threshold : float
        A frame-to-frame movement larger than this (pixels) is part of a saccade.

    Returns
    -------
    dict of str to numpy.ndarray
        ``onset`` (trials, frames) bool: the saccade onsets. ``since_onset`` (trials, frames):
        frames since the last onset at or before the frame (0 at an onset; ``inf`` before the
        trial's first). ``lag`` (trials, frames): the signed frames from the nearest onset,
        past or future (negative before it; the past one on a tie; ``inf`` without any).
        ``vector`` (trials, frames, 2): the vector of that nearest saccade (zeros without any).
        ``last_vector`` (trials, frames, 2): the vector of the last saccade (zeros before the
        first).

    Examples
    --------
    >>> g = np.zeros((1, 6, 2)); g[0, 3:] = [5.0, 0.0]
    >>> c = saccade_covariates(g)
    >>> c["since_onset"][0].tolist(), c["lag"][0].tolist()
    ([inf, inf, inf, 0.0, 1.0, 2.0], [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0])
    """
    gaze = np.asarray(gaze, dtype=np.float64)
    if gaze.ndim != 3 or gaze.shape[-1] != 2:
        raise DataError("gaze", "eye positions (trials, frames, 2) per frame", describe(gaze))
    if not np.isfinite(gaze).all():
        raise DataError("gaze", "finite eye positions", "NaN or inf")
    if not threshold > 0:
        raise DataError("saccade_threshold", "a positive distance in pixels", repr(threshold))
    n, frames, _ = gaze.shape
    step = np.linalg.norm(np.diff(gaze, axis=1), axis=-1) > threshold  # (n, frames - 1): movement into f + 1
    moving = np.concatenate([np.zeros((n, 1), bool), step], axis=1)  # moving[f]: the eye moved into f
    onset = moving & ~np.concatenate([np.zeros((n, 1), bool), moving[:, :-1]], axis=1)
    f = np.arange(frames)
    last = np.maximum.accumulate(np.where(onset, f, -1), axis=1)
    upcoming = np.minimum.accumulate(np.where(onset, f, frames)[:, ::-1], axis=1)[:, ::-1]
    since = np.where(last >= 0, f - last, np.inf)
    until = np.where(upcoming < frames, upcoming - f, np.inf)
    past = since <= until
    lag = np.where(past, since, -until)
    nearest = np.where(past, last, upcoming)

    # each onset's vector: landing (the run's last moving frame) minus the frame before the run
    still = np.where(~moving, f, frames)
    landing = np.minimum.accumulate(still[:, ::-1], axis=1)[:, ::-1] - 1  # last moving frame of the run from f
    landing = np.clip(landing, 0, frames - 1)
    before = np.clip(f - 1, 0, None)
    vec_at = np.take_along_axis(gaze, landing[..., None].repeat(2, -1), 1) - gaze[:, before]  # (n, frames, 2)

    def vector_of(index: np.ndarray, valid: np.ndarray) -> np.ndarray:
        safe = np.clip(index, 0, frames - 1)
        v = np.take_along_axis(vec_at, safe[..., None].repeat(2, -1), 1)
        return np.where(valid[..., None], v, 0.0)

    return {
        "onset": onset,
        "since_onset": since,
        "lag": lag.astype(np.float64),
        "vector": vector_of(nearest, np.isfinite(lag)),
        "last_vector": vector_of(last, last >= 0),
    }
