"""Deterministic train / validation / test splits.

Two rules, used by :class:`~probtwin.Recording` when no tiers are given and by the loaders of
:mod:`probtwin.datasets` where a source gives no split:

- by stimulus: ``numpy.random.RandomState(seed).permutation(n_stimuli)`` over the distinct
  stimulus ids (sorted), the first 80% train, the next 10% validation, the last 10% test, so that
  the repeats of one stimulus never straddle two tiers;
- consecutive (time series): the first 80% of the trials train, the next 10% validation, the last
  10% test.
"""

from __future__ import annotations

import numpy as np

from probtwin.errors import DataError

__all__ = ["split_by_stimulus", "split_consecutive", "tier_counts"]

_TIER_NAMES = np.array(["train", "validation", "test"])


def tier_counts(n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[int, int, int]:
    """Numbers of items in each tier: ``floor(0.8 n)`` train (at least 1), ``floor(0.9 n)`` train
    plus validation, the rest test.

    Examples
    --------
    >>> tier_counts(1200)
    (960, 120, 120)
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise DataError("fractions", "three non-negative numbers that sum to 1", str(tuple(fractions)))
    if n < 1:
        raise DataError("n", "at least one item to split", str(n))
    n_train = max(1, int(np.floor(f[0] * n + 1e-9)))
    n_train_val = max(n_train, int(np.floor((f[0] + f[1]) * n + 1e-9)))
    return n_train, n_train_val - n_train, n - n_train_val


def split_by_stimulus(
    stimulus_ids: np.ndarray,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> np.ndarray:
    """Tier label of each trial, splitting the distinct stimuli at random with a fixed seed.

    Parameters
    ----------
    stimulus_ids : numpy.ndarray, shape (trials,)
        Id of the stimulus shown on each trial; trials with the same id are repeats.
    fractions : (float, float, float)
        Fractions of stimuli in train, validation and test.
    seed : int
        Seed of ``numpy.random.RandomState`` for the permutation.

    Returns
    -------
    numpy.ndarray of str, shape (trials,)
        ``"train"``, ``"validation"`` or ``"test"``.
    """
    ids = np.asarray(stimulus_ids)
    unique, inverse = np.unique(ids, return_inverse=True)
    n_train, n_val, _ = tier_counts(len(unique), fractions)
    order = np.random.RandomState(seed).permutation(len(unique))
    tier_of_stimulus = np.empty(len(unique), dtype=np.int64)
    tier_of_stimulus[order] = np.repeat([0, 1, 2], [n_train, n_val, len(unique) - n_train - n_val])
    return _TIER_NAMES[tier_of_stimulus[inverse.reshape(-1)]]


def split_by_repeat(stimulus_ids: np.ndarray) -> np.ndarray:
    """Tier label of each trial, holding out repeats rather than stimuli.

    Of every stimulus shown at least three times, the last presentation is ``"test"`` and the one
    before it ``"validation"``; every other trial is ``"train"``. This is the protocol of noise
    models and of oracle references on repeated stimuli: every held-out trial is a new response to
    a stimulus seen in training.

    Parameters
    ----------
    stimulus_ids : numpy.ndarray, shape (trials,)
        In presentation order.

    Returns
    -------
    numpy.ndarray of str, shape (trials,)

    Examples
    --------
    >>> split_by_repeat(np.array([0, 1, 0, 0, 1])).tolist()
    ['train', 'train', 'validation', 'test', 'train']
    """
    ids = np.asarray(stimulus_ids).reshape(-1)
    tiers = np.full(len(ids), "train", dtype=_TIER_NAMES.dtype)
    order = np.argsort(ids, kind="stable")  # presentations of each stimulus, in order
    sorted_ids = ids[order]
    last = np.r_[sorted_ids[1:] != sorted_ids[:-1], True]
    _, counts = np.unique(sorted_ids, return_counts=True)
    enough = np.repeat(counts >= 3, counts)
    before_last = np.r_[last[1:], False] & ~last
    tiers[order[last & enough]] = "test"
    tiers[order[before_last & enough]] = "validation"
    return tiers


def split_consecutive(n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """Tier label of each of ``n`` consecutive trials: train first, then validation, then test.

    Examples
    --------
    >>> split_consecutive(10).tolist()
    ['train', 'train', 'train', 'train', 'train', 'train', 'train', 'train', 'validation', 'test']
    """
    counts = tier_counts(n, fractions)
    return np.repeat(_TIER_NAMES, counts)
