"""Windows of time cut into frames: spike times counted and sampled series averaged per frame.

A set of trials is a window per trial, ``[start_t, stop_t)`` in seconds, and a frame length
(``bin_size``): trial ``t`` holds ``n_t = floor((stop_t - start_t) / bin_size)`` whole frames,
frame ``f`` spanning ``[start_t + f * bin_size, start_t + (f + 1) * bin_size)``; a trial's last
partial frame is not kept. Without a frame length each window is one frame. Trials shorter than
the longest are padded with NaN after their last frame (:mod:`probtwin.data.padding`).

Every frame is half-open: a spike at a frame's end belongs to the next frame, and counts equal
``((t >= lo) & (t < hi)).sum()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from probtwin.errors import DataError
from probtwin.infer.progress import progress

__all__ = ["FrameGrid", "bin_spike_times", "frame_grid", "resample_series"]

FRAME_TOLERANCE = 1e-9  # relative slack for a window that is a whole number of frames up to rounding
_EDGE = 1e-9  # seconds: an edge computed as start + f * bin_size may round past the true one; a time
# this close below an edge belongs to the next frame (far below any sampling interval)


class FrameGrid:
    """The frames of each trial's window.

    Parameters
    ----------
    edges : ndarray, shape (trials, frames + 1)
        Frame boundaries in seconds; a trial's edges after its last frame repeat its end.
    counts : ndarray of int, shape (trials,)
        Whole frames per trial.
    per_frame : bool
        Whether the windows were cut into frames (``bin_size`` given) or are one frame each.
    """

    def __init__(self, edges: np.ndarray, counts: np.ndarray, per_frame: bool) -> None:
        self.edges = edges
        self.counts = counts
        self.per_frame = per_frame

    @property
    def n_trials(self) -> int:
        return self.edges.shape[0]

    @property
    def n_frames(self) -> int:
        return self.edges.shape[1] - 1

    @property
    def mask(self) -> np.ndarray:
        """Whether frame ``f`` is one of trial ``t``'s, shape (trials, frames)."""
        return np.arange(self.n_frames)[None, :] < self.counts[:, None]

    def fold(self, values: np.ndarray) -> np.ndarray:
        """Per-frame values (trials, frames, k) as a recording's field: NaN after each trial's
        frames; (trials, k) where the windows are one frame each."""
        values = np.where(self.mask[..., None], values, np.nan)
        return values if self.per_frame else values[:, 0]


def frame_grid(starts: np.ndarray, stops: np.ndarray, bin_size: float | None, field: str = "window") -> FrameGrid:
    """Cut each trial's window into frames.

    Parameters
    ----------
    starts, stops : ndarray, shape (trials,)
        Window bounds in seconds; finite, ``stops > starts``.
    bin_size : float or None
        Frame length in seconds; ``None``: each window is one frame.
    field : str
        Argument named in errors.

    Returns
    -------
    FrameGrid
    """
    starts = np.asarray(starts, dtype=float)
    stops = np.asarray(stops, dtype=float)
    bad = ~np.isfinite(starts) | ~np.isfinite(stops) | ~(stops > starts)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            field,
            "finite windows with stop after start",
            f"{bad.sum()} bad of {bad.size} (rows {rows[:5].tolist()}{' ...' if rows.size > 5 else ''})",
        )
    if bin_size is None:
        return FrameGrid(np.stack([starts, stops], axis=1), np.ones(starts.size, dtype=int), per_frame=False)
    if isinstance(bin_size, bool) or not isinstance(bin_size, (int, float, np.number)) or not bin_size > 0:
        raise DataError("bin_size", "a positive frame length in seconds", repr(bin_size))
    if not np.isfinite(bin_size):
        raise DataError("bin_size", "a positive frame length in seconds", repr(bin_size))
    lengths = (stops - starts) / bin_size
    counts = np.floor(lengths * (1 + FRAME_TOLERANCE)).astype(int)
    if (counts == 0).any():
        raise DataError(
            "bin_size",
            "a frame length no longer than every window",
            f"{bin_size} s against a shortest window of {float((stops - starts).min()):.4g} s",
        )
    edges = starts[:, None] + bin_size * np.minimum(np.arange(counts.max() + 1)[None, :], counts[:, None])
    return FrameGrid(edges, counts, per_frame=True)


def bin_spike_times(spike_times: Sequence[np.ndarray], grid: FrameGrid) -> np.ndarray:
    """Spike counts of each unit in each trial's frames.

    Parameters
    ----------
    spike_times : sequence of ndarray
        One array of spike times (seconds, any order) per unit.
    grid : FrameGrid

    Returns
    -------
    ndarray, shape (trials, frames, units) or (trials, units)
        Counts as floats; NaN after a trial's last frame.
    """
    edges = grid.edges.ravel()
    counts = np.empty((grid.n_trials, grid.n_frames, len(spike_times)))
    units = progress(enumerate(spike_times), "count spikes", total=len(spike_times), unit="unit")
    for u, times in units:  # a sorted search per unit covers every trial and frame at once
        cumulative = np.searchsorted(np.sort(np.asarray(times, dtype=float)), edges - _EDGE, side="left")
        counts[:, :, u] = np.diff(cumulative.reshape(grid.edges.shape), axis=1)
    return grid.fold(counts)


def resample_series(timestamps: np.ndarray, data: np.ndarray, grid: FrameGrid, field: str = "series") -> np.ndarray:
    """A sampled time series on each trial's frames: the mean of its samples in each frame.

    A frame that holds no sample (a series sampled more slowly than the frames) takes the series
    linearly interpolated at the frame's centre. Frames outside the series' recorded span are an
    error, never extrapolated. NaN samples (a blink in a pupil trace) are missing: a frame's
    mean is over its finite samples, interpolation runs between finite samples, and a frame with
    no finite sample within it or around it is an error naming the trials.

    Parameters
    ----------
    timestamps : ndarray, shape (samples,)
        Increasing sample times in seconds.
    data : ndarray, shape (samples,) or (samples, k)
    grid : FrameGrid
    field : str
        Name of the series, for errors.

    Returns
    -------
    ndarray, shape (trials, frames, k) or (trials, k)
        NaN after a trial's last frame.
    """
    t = np.asarray(timestamps, dtype=float)
    x = np.asarray(data, dtype=float)
    if t.ndim != 1 or x.ndim == 0 or t.size != x.shape[0] or t.size < 2 or (np.diff(t) < 0).any():
        raise DataError(
            field, "at least two samples with increasing timestamps", f"{t.size} timestamps, data {x.shape}"
        )
    x = x.reshape(x.shape[0], -1)
    lo, hi = grid.edges[:, :-1], grid.edges[:, 1:]
    outside = grid.mask & ((lo < t[0] - FRAME_TOLERANCE) | (hi > t[-1] + np.median(np.diff(t)) + FRAME_TOLERANCE))
    if outside.any():
        trials = np.flatnonzero(outside.any(axis=1))
        raise DataError(
            field,
            f"samples over every trial's window (the series spans {t[0]:.4g}-{t[-1]:.4g} s)",
            f"{trials.size} trials outside it (trials {trials[:5].tolist()}{' ...' if trials.size > 5 else ''})",
        )
    first = np.searchsorted(t, lo - _EDGE, side="left")
    last = np.searchsorted(t, hi - _EDGE, side="left")
    finite = np.isfinite(x)
    zero = np.zeros((1, x.shape[1]))
    sums = np.concatenate([zero, np.cumsum(np.where(finite, x, 0.0), axis=0)])
    counts = np.concatenate([zero, np.cumsum(finite, axis=0)])
    n = counts[last] - counts[first]  # finite samples in each frame, per column
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums[last] - sums[first]) / n
    centres = (lo + hi) / 2
    interpolated = np.stack(
        [
            np.interp(centres, t[finite[:, k]], x[finite[:, k], k], left=np.nan, right=np.nan)
            if finite[:, k].any()
            else np.full(centres.shape, np.nan)
            for k in range(x.shape[1])
        ],
        axis=-1,
    )
    out = np.where(n > 0, means, interpolated)
    if (~np.isfinite(out) & grid.mask[..., None]).any():
        trials = np.flatnonzero((~np.isfinite(out) & grid.mask[..., None]).any(axis=(1, 2)))
        raise DataError(field, "finite samples in or around every frame", f"none for trials {trials[:5].tolist()}")
    return grid.fold(out)
