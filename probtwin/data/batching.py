"""Minibatches of trials for stochastic variational inference."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from probtwin.data.padding import frame_counts, hold_padding
from probtwin.data.recording import Recording
from probtwin.errors import DataError

__all__ = ["TrialBatches", "batch_arrays", "clip_arrays", "default_burn_in", "joint_steps"]


class TrialBatches:
    """Trial indices in minibatches, reshuffled every epoch, reproducible from a seed.

    Parameters
    ----------
    n_trials : int
        Number of trials to draw from.
    batch_size : int
        Trials a batch (the last batch of an epoch may be smaller unless ``drop_last``).
    shuffle : bool
        Draw a new permutation each epoch (``numpy.random.default_rng((seed, epoch))``).
    seed : int
        Seed of the permutations.
    drop_last : bool
        Leave out a last, smaller batch.

    Examples
    --------
    >>> batches = TrialBatches(5, batch_size=2, shuffle=False)
    >>> [b.tolist() for b in batches.epoch(0)]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self, n_trials: int, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False
    ) -> None:
        if n_trials < 1:
            raise DataError("n_trials", "at least one trial", str(n_trials))
        if batch_size < 1:
            raise DataError("batch_size", "a positive integer", str(batch_size))
        self.n_trials = int(n_trials)
        self.batch_size = int(min(batch_size, n_trials))
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last

    def __len__(self) -> int:
        full, rest = divmod(self.n_trials, self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        """Yield the index arrays of one epoch, each shape (batch,)."""
        if self.shuffle:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.n_trials)
        else:
            order = np.arange(self.n_trials)
        for k in range(len(self)):
            yield order[k * self.batch_size : (k + 1) * self.batch_size]


def joint_steps(n_trials: list[int], batch_size: int, seed: int, epoch: int) -> list[list[np.ndarray]]:
    """Minibatches of several sessions taken together: every step holds a batch of every session.

    The session with the most batches of ``batch_size`` sets the number of steps ``J`` of an
    epoch and keeps ``batch_size``; every other session ``k`` has batches of
    ``ceil(n_k / J)`` trials, its permutations repeated as needed to fill ``J`` steps. Each
    batch is a uniform draw of its session's trials, so a step's likelihood, each batch scaled
    by ``n_k / len(batch)``, is an unbiased estimate of the full data's over all sessions.

    Parameters
    ----------
    n_trials : list of int
        Train trials of each session.
    batch_size : int
    seed, epoch : int
        Session ``k`` draws its permutations from ``(seed + 7919 k, epoch)`` (and, when it
        repeats them, ``(seed + 7919 k, epoch, repeat)``).

    Returns
    -------
    list of list of numpy.ndarray
        ``steps[j][k]``: the trial indices (batch,) of session ``k`` in step ``j``.

    Examples
    --------
    >>> steps = joint_steps([4, 2], batch_size=2, seed=0, epoch=0)
    >>> [[len(b) for b in step] for step in steps]
    [[2, 1], [2, 1]]
    """
    if not n_trials:
        raise DataError("n_trials", "at least one session", "none")
    n_steps = max(len(TrialBatches(n, batch_size)) for n in n_trials)
    per_session = []
    for k, n in enumerate(n_trials):
        size = batch_size if len(TrialBatches(n, batch_size)) == n_steps else -(-n // n_steps)
        batches = TrialBatches(n, size, seed=seed + 7919 * k)
        out = list(batches.epoch(epoch))
        repeat = 1
        while len(out) < n_steps:
            order = np.random.default_rng((seed + 7919 * k, epoch, repeat)).permutation(n)
            out.extend(order[j : j + size] for j in range(0, n - size + 1, size))
            repeat += 1
        per_session.append(out[:n_steps])
    return [list(step) for step in zip(*per_session)]


def batch_arrays(recording: Recording, index: np.ndarray, dtype: type = np.float32) -> dict[str, np.ndarray]:
    """Read the per-trial fields of some trials into memory.

    Parameters
    ----------
    recording : Recording
    index : numpy.ndarray of int, shape (batch,)
        Positions of the trials in ``recording``.
    dtype : numpy dtype
        Float type of the returned arrays.

    Returns
    -------
    dict of str to numpy.ndarray
        ``"responses"`` and, where the recording has them, ``"stimuli"``, ``"behavior"`` and
        ``"gaze"``; each with the trials first, shape (batch, ...).
    """
    out = {}
    for field in ("stimuli", "responses", "behavior", "gaze"):
        values = getattr(recording, field)
        if values is not None:
            out[field] = np.asarray(values[index], dtype=dtype)
    return out


def default_burn_in(clip: int, frames: int, history: int) -> int:
    """Unscored first frames of a training clip: none when the clip is a whole trial (``clip ==
    frames``: its first frames see what came before the trial as a causal model's padding, as
    when whole trials are predicted), else the model's ``history`` frames, at most half the clip
    (a window cut from inside a trial lacks their past).

    Examples
    --------
    >>> default_burn_in(60, 60, 18), default_burn_in(60, 300, 18), default_burn_in(20, 300, 18)
    (0, 18, 10)
    """
    return 0 if clip == frames else min(int(history), clip // 2)


def clip_arrays(arrays: dict[str, np.ndarray], clip: int, rng: np.random.Generator, burn_in: int = 0) -> dict:
    """A random window of ``clip`` consecutive frames of each trial (training on clips).

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        As :func:`batch_arrays` of a video recording: ``stimuli`` (trials, C, frames, H, W),
        ``responses`` (trials, frames, neurons), ``behavior`` and ``gaze`` per frame (trials,
        frames, d) or per trial (trials, d).
    clip : int
        Frames of each window (at most the trials' frames).
    rng : numpy.random.Generator
        Draws each trial's first frame.
    burn_in : int
        The responses of the window's first ``burn_in`` frames are left out (the stimuli,
        behaviour and gaze keep them: they are the history the later frames need).

    Returns
    -------
    dict
        The same fields over the windows; ``responses`` (trials, clip - burn_in, neurons). Trials
        of unequal length (NaN-padded, :mod:`probtwin.data.padding`): each window lies in its
        trial where the trial is long enough, else starts at its first frame; the frames past
        a trial's end hold its last frame, and ``"lengths"`` (trials,) says how many of each
        window's scored frames are the trial's.
    """
    frames = arrays["responses"].shape[1]
    if not 0 <= burn_in < clip <= frames:
        raise DataError(
            "clip", f"0 <= burn_in < clip <= {frames} (the trials' frames)", f"burn_in {burn_in}, clip {clip}"
        )
    n = len(arrays["responses"])
    counts = frame_counts(arrays["responses"])
    if counts.min() <= burn_in:
        raise DataError(
            "burn_in", f"fewer unscored frames than the shortest trial's {counts.min()}", f"burn_in {burn_in}"
        )
    if np.all(counts == frames):
        start = rng.integers(0, frames - clip + 1, n)
    else:
        start = rng.integers(0, np.maximum(counts - clip, 0) + 1)
    window = start[:, None] + np.arange(clip)  # (trials, clip)
    rows = np.arange(n)[:, None]
    out = {"responses": arrays["responses"][rows, window[:, burn_in:]]}
    if arrays.get("stimuli") is not None:
        out["stimuli"] = arrays["stimuli"][rows, :, window].transpose(0, 2, 1, 3, 4)  # (trials, C, clip, H, W)
    for field in ("behavior", "gaze"):
        values = arrays.get(field)
        if values is not None:
            out[field] = values[rows, window] if values.ndim == 3 else values
    if np.any(counts < frames):
        out, lengths = hold_padding(out)
        out["lengths"] = np.full(n, clip - burn_in) if lengths is None else lengths
    return out
