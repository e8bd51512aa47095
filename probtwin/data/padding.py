"""Trials of unequal length: per-frame fields padded with NaN after each trial's last frame.

A recording whose trials differ in length (Sensorium 2023's movies) stores every per-frame field
at the longest trial's length, the frames after a trial's end set to NaN: a trial's length is the
first frame from which its responses are NaN for every neuron to the end. NaN anywhere else (a
NaN frame followed by a recorded one, or some neurons NaN in a recorded frame) is an error, not
padding. Stimuli, behaviour and gaze are cut with the responses: they must be finite in a trial's
frames and may hold anything after them.

A twin reads padded trials with :func:`hold_padding`: the frames after a trial's end repeat its
last frame (so that every value is one the likelihood accepts) and a frame mask says which
frames are the trial's, to score those only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probtwin.errors import DataError

__all__ = ["FRAME_AXES", "check_padded", "frame_counts", "frame_mask", "hold_padding", "recorded_frames"]

#: The frame axis of each per-frame field in a batch of trials (videos: trials, C, frames, H, W).
FRAME_AXES = {"responses": 1, "behavior": 1, "gaze": 1}

_CHUNK_BYTES = 64 * 2**20


def _frame_axis(field: str, x: Any) -> int:
    return 2 if field == "stimuli" and x.ndim == 5 else FRAME_AXES.get(field, 1)


def _per_frame(field: str, x: Any) -> bool:
    """Whether a batch's field has a frame axis (videos, task variables, per-frame responses,
    behaviour or gaze) that may be padded: arrays read from a recording, not tensors built by a
    query (a movie optimised in place has no padding)."""
    if not isinstance(x, np.ndarray):
        return False
    if field == "stimuli":
        return x.ndim in (3, 5)
    return field in FRAME_AXES and x.ndim == 3


def _chunks(x: Any):
    """Blocks of trials of an array-like, read about ``_CHUNK_BYTES`` at a time."""
    per_trial = max(1, int(np.prod(x.shape[1:])) * np.dtype(x.dtype).itemsize)
    step = max(1, _CHUNK_BYTES // per_trial)
    for start in range(0, x.shape[0], step):
        yield start, np.asarray(x[start : start + step])


def _no_inf(block: np.ndarray, field: str, start: int) -> None:
    if np.isinf(block).any():
        bad = tuple(int(b) for b in np.argwhere(np.isinf(block))[0])
        where = (bad[0] + start, *bad[1:])
        raise DataError(field, "finite values (NaN only as trailing padding)", f"inf at index {where}")


def _refuse(bad: np.ndarray, field: str, start: int, expected: str, what: str) -> None:
    """Raise, naming the first (trial, frame) of ``bad`` (chunk, frames), where there is one."""
    if bad.any():
        t, f = np.argwhere(bad)[0]
        raise DataError(field, expected, f"{what} trial {t + start}, frame {f}")


def frame_counts(x: Any, field: str = "responses", axis: int = 1) -> np.ndarray:
    """Each trial's length: the frames before its trailing padding (frames NaN in every value).

    Parameters
    ----------
    x : array-like, shape (trials, ..., frames, ...)
        A per-frame field, read in chunks of trials.
    field : str
        Its name, for errors.
    axis : int
        The frame axis.

    Returns
    -------
    numpy.ndarray of int64, shape (trials,)

    Raises
    ------
    DataError
        For inf; for NaN that is not trailing padding (inside a trial, or in some values of a
        frame only); for a trial with no frame.
    """
    out = np.empty(x.shape[0], dtype=np.int64)
    n_frames = x.shape[axis]
    for start, block in _chunks(x):
        if np.dtype(block.dtype).kind != "f":
            out[start : start + len(block)] = n_frames
            continue
        _no_inf(block, field, start)
        nan = np.moveaxis(np.isnan(block), axis, 1).reshape(len(block), n_frames, -1)
        full, some = nan.all(-1), nan.any(-1)  # (chunk, frames)
        _refuse(
            some & ~full, field, start, "NaN only as whole padding frames after a trial's end", "NaN in some values of"
        )
        recorded = ~full
        lengths = np.where(recorded.any(1), n_frames - np.argmax(recorded[:, ::-1], axis=1), 0)
        inside = full & (np.arange(n_frames) < lengths[:, None])
        _refuse(inside, field, start, "NaN only as trailing padding (frames after a trial's end)", "a NaN frame inside")
        if (lengths == 0).any():
            t = int(np.flatnonzero(lengths == 0)[0])
            raise DataError(field, "at least one recorded frame a trial", f"trial {t + start} is all NaN")
        out[start : start + len(block)] = lengths
    return out


def check_padded(x: Any, field: str, lengths: np.ndarray, axis: int = 1) -> None:
    """Raise unless ``x`` is finite in each trial's first ``lengths`` frames (after them it may
    hold anything but inf: padding, or frames recorded past the responses' end)."""
    n_frames = x.shape[axis]
    for start, block in _chunks(x):
        if np.dtype(block.dtype).kind != "f":
            continue
        _no_inf(block, field, start)
        nan = np.moveaxis(np.isnan(block), axis, 1).reshape(len(block), n_frames, -1).any(-1)
        inside = nan & (np.arange(n_frames) < lengths[start : start + len(block), None])
        _refuse(inside, field, start, "finite values in every frame a trial's responses are recorded", "NaN in")


def frame_mask(lengths: np.ndarray, frames: int) -> np.ndarray:
    """Which frames belong to each trial, bool (trials, frames)."""
    return np.arange(frames) < np.asarray(lengths)[:, None]


def hold_padding(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Trials of a batch with their padding frames holding each trial's last frame.

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        A batch (:func:`probtwin.data.batching.batch_arrays`): ``responses`` (trials, frames,
        neurons), ``stimuli`` (trials, C, frames, H, W) or task variables (trials, frames, d),
        ``behavior`` and ``gaze`` per frame (trials, frames, d) or per trial. Inputs with more
        frames than the responses (a clip's unscored first frames) end with the responses'
        frames: an input's frame ``f + offset`` is the responses' frame ``f``.

    Returns
    -------
    arrays : dict
        The same fields, every value finite: frames at or after a trial's end repeat its last
        frame.
    lengths : numpy.ndarray of int, shape (trials,), or None
        Each trial's frames of responses (of the inputs, without responses), or None where no
        trial is padded.

    Raises
    ------
    DataError
        NaN that is not trailing padding, in any field (see :func:`frame_counts`).
    """
    fields = {k: v for k, v in arrays.items() if _per_frame(k, v)}
    if not fields:
        return arrays, None
    y = fields.get("responses")
    if y is not None:
        lengths = frame_counts(y, "responses")
    else:
        lengths = np.min([frame_counts(v, k, _frame_axis(k, v)) for k, v in fields.items()], axis=0)
    out = dict(arrays)
    for key, value in fields.items():
        axis = _frame_axis(key, value)
        n_frames = value.shape[axis]
        ends = lengths if y is None else lengths + n_frames - y.shape[1]  # the offset of a clip's burn-in
        if key != "responses":
            check_padded(value, key, ends, axis)
        if np.all(ends >= n_frames):
            continue
        index = np.minimum(np.arange(n_frames), ends[:, None] - 1)  # (trials, frames)
        shape = [1] * value.ndim
        shape[0], shape[axis] = len(index), n_frames
        out[key] = np.take_along_axis(value, index.reshape(shape), axis=axis)
    key, value = ("responses", y) if y is not None else next(iter(fields.items()))
    frames = value.shape[_frame_axis(key, value)]
    return out, (None if np.all(lengths >= frames) else lengths)


def recorded_frames(y: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The frames each trial has, and the responses with its padding held (every value in the
    likelihood's support), for scoring responses that may be padded.

    Parameters
    ----------
    y : numpy.ndarray, shape (trials, frames, neurons), or (trials, neurons)

    Returns
    -------
    recorded : numpy.ndarray of bool, shape (trials, frames), or None for responses per trial
    held : numpy.ndarray
        ``y`` with the padding frames holding each trial's last frame (:func:`hold_padding`).
    """
    if y.ndim != 3:
        return None, y
    return ~np.isnan(y).all(-1), hold_padding({"responses": y})[0]["responses"]
