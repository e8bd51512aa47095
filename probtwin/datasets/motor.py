"""Macaque motor cortex during center-out reaching (Dyer et al. 2017, the DAD demo data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probtwin.data.recording import Recording
from probtwin.data.splits import split_consecutive
from probtwin.datasets.paths import data_file
from probtwin.errors import DataError

__all__ = ["dad_m1", "RATE_SCALE"]

#: Files of these monkeys store rates in spikes per second over 200 ms bins: counts x 5.
RATE_SCALE = {"chewie": 1, "mihi": 5}
_SESSIONS = {0: ("Ytr", "Xtr", "Ttr"), 1: ("Yte", "Xte", "Tte")}


def dad_m1(monkey: str = "chewie", session: int = 0, window: int = 16, root: str | Path | None = None) -> Recording:
    """Binned spike counts, hand velocity and reach target, cut into windows of consecutive bins.

    Parameters
    ----------
    monkey : {"chewie", "mihi"}
        File ``dad_m1/<monkey>_demo.mat``.
    session : {0, 1}
        0: the ``Ytr, Xtr, Ttr`` arrays; 1: the ``Yte, Xte, Tte`` arrays.
    window : int
        Bins a trial. The last ``n_bins mod window`` bins, which fill no window, are left out;
        ``trial_info["start_bin"]`` gives where each window starts.
    root : str or Path, optional

    Returns
    -------
    Recording
        A time series: stimuli the one-hot reach target (trials, window, 4); responses integer
        spike counts per 200 ms bin (trials, window, units); behaviour the hand velocity
        (trials, window, 2). Tiers: consecutive windows, the first 80% train, the next 10%
        validation, the last 10% test.
    """
    from scipy.io import loadmat

    if monkey not in RATE_SCALE:
        raise DataError("monkey", f"one of {tuple(RATE_SCALE)}", repr(monkey))
    if session not in _SESSIONS:
        raise DataError("session", "0 (Ytr/Xtr/Ttr) or 1 (Yte/Xte/Tte)", repr(session))
    mat = loadmat(data_file(f"dad_m1/{monkey}_demo.mat", root))
    ky, kx, kt = _SESSIONS[session]
    spikes = np.asarray(mat[ky], dtype=np.float64) / RATE_SCALE[monkey]
    if not np.allclose(spikes, np.round(spikes)):
        raise DataError(ky, f"spike counts (x {RATE_SCALE[monkey]})", "non-integer values")
    spikes = np.round(spikes).astype(np.int64)
    velocity = np.asarray(mat[kx], dtype=np.float64)
    target = np.asarray(mat[kt]).reshape(-1).astype(np.int64)
    n_bins = len(spikes)
    if not (len(velocity) == len(target) == n_bins):
        raise DataError(kx, f"{n_bins} bins like {ky}", f"{len(velocity)} and {len(target)}")
    if int(window) != window or window < 1 or window > n_bins:
        raise DataError("window", f"an integer in [1, {n_bins}]", repr(window))
    n_targets = int(target.max()) + 1
    n_windows = n_bins // window
    used = n_windows * window
    onehot = np.eye(n_targets, dtype=np.float32)[target[:used]]
    fold = lambda a: a[:used].reshape(n_windows, window, *a.shape[1:])  # noqa: E731
    return Recording(
        fold(onehot),
        fold(spikes),
        behavior=fold(velocity),
        neuron_area=np.full(spikes.shape[1], "M1"),
        tiers=split_consecutive(n_windows),
        trial_info={"start_bin": np.arange(n_windows) * window},
        name=f"dad_m1_{monkey}_{session}",
    )
