"""Peri-saccadic single units probed on a 9 x 9 grid (Niknam et al. 2019)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probtwin.data.recording import Recording
from probtwin.datasets.paths import data_root
from probtwin.errors import DataError

__all__ = ["nategh_perisaccadic", "PROBE_GRID"]

PROBE_GRID = (9, 9)
_SACCADE_MS = 1000  # trials are aligned to saccade onset at this millisecond


def _units(folder: Path) -> dict[str, list[Path]]:
    sessions: dict[str, list[Path]] = {}
    for file in sorted(folder.glob("*.mat")):
        sessions.setdefault(file.stem[:6], []).append(file)
    return sessions


def _bin(x: np.ndarray, bin_ms: int) -> np.ndarray:
    return x.reshape(x.shape[0], -1, bin_ms, *x.shape[2:]).sum(axis=2)


def _load_session(files: list[Path], bin_ms: int, window_ms: tuple[int, int]) -> Recording:
    from scipy.io import loadmat

    mats = [loadmat(f) for f in files]
    stim = mats[0]["stim"].astype(np.int64)
    cond = mats[0]["cond"].reshape(-1).astype(np.int64)
    for f, m in zip(files[1:], mats[1:]):
        if not (np.array_equal(m["stim"], mats[0]["stim"]) and np.array_equal(m["cond"].reshape(-1), cond)):
            raise DataError(f.name, f"the trials of {files[0].name} (same session date)", "different trials")
    n_trials, n_ms = stim.shape
    start, stop = _SACCADE_MS + window_ms[0], _SACCADE_MS + window_ms[1]
    if not (0 <= start < stop <= n_ms) or (stop - start) % bin_ms:
        raise DataError(
            "window_ms",
            f"a window within [-{_SACCADE_MS}, {n_ms - _SACCADE_MS}) ms whose length is a multiple of bin_ms={bin_ms}",
            repr(window_ms),
        )
    spikes = np.stack([m["resp"][:, start:stop] for m in mats], axis=-1).astype(np.int64)
    n_frames = (stop - start) // bin_ms
    n_loc = PROBE_GRID[0] * PROBE_GRID[1]
    code = stim[:, start:stop]
    if code.min() < 0 or code.max() > n_loc:
        raise DataError("stim", f"probe codes 0..{n_loc}", f"range {code.min()}..{code.max()}")
    t, ms = np.nonzero(code)
    flat = (t * n_frames + ms // bin_ms) * n_loc + code[t, ms] - 1
    probe = np.bincount(flat, minlength=n_trials * n_frames * n_loc).reshape(n_trials, n_frames, *PROBE_GRID)
    maps = probe.transpose(0, 1, 3, 2)[:, None] / bin_ms  # location k at row k % 9, column k // 9
    onset = np.full(n_trials, -window_ms[0] / bin_ms)  # the saccade's onset, in frames from the window's start
    return Recording(
        maps.astype(np.float32),
        _bin(spikes, bin_ms),
        neuron_ids=np.array([f.stem for f in files]),
        trial_info={"condition": cond, "saccade_onset": onset},
        name=f"nategh_perisaccadic_{files[0].stem[:6]}",
    )


def nategh_perisaccadic(
    session: str | None = None,
    root: str | Path | None = None,
    bin_ms: int = 10,
    window_ms: tuple[int, int] = (-1000, 1000),
) -> Recording | list[Recording]:
    """Spikes of visual-cortex units to probes flashed around a saccade.

    Parameters
    ----------
    session : str, optional
        A recording date (first six digits of the file names, e.g. ``"181024"``) or one unit's
        file name (``"181024051"``): units recorded on one date share their trials and form one
        recording. ``None``: every session, as a list.
    root : str or Path, optional
    bin_ms : int
        Bin width in milliseconds.
    window_ms : (int, int)
        Time window relative to saccade onset, [start, stop) ms; its length must be a multiple
        of ``bin_ms``. The source covers -1000 to +1000 ms.

    Returns
    -------
    Recording or list of Recording
        Stimuli are probe maps, a video (trials, 1, frames, 9, 9): the fraction of each bin in
        which the probe was at each grid location (row, column), probe code ``k + 1`` at row
        ``k % 9`` and column ``k // 9``; responses spike counts (trials, frames, units);
        ``trial_info["condition"]`` and ``trial_info["saccade_onset"]`` (the frame at which the
        saccade starts, from the window's start: ``-window_ms[0] / bin_ms``); split by trial
        (each trial's probe sequence is its own stimulus), 80/10/10.
    """
    if int(bin_ms) != bin_ms or bin_ms < 1:
        raise DataError("bin_ms", "a positive integer", repr(bin_ms))
    folder = data_root(root) / "nategh_perisaccadic"
    sessions = _units(folder)
    if not sessions:
        raise FileNotFoundError(f"missing data files: no .mat units in {folder}")
    if session is None:
        return [_load_session(files, bin_ms, window_ms) for files in sessions.values()]
    key = str(session)[:6]
    if key not in sessions:
        raise DataError("session", f"one of {sorted(sessions)} (or a unit file name)", repr(session))
    files = sessions[key]
    if len(str(session)) > 6:
        files = [f for f in files if f.stem == str(session)]
        if not files:
            raise DataError("session", f"a unit among {[f.stem for f in sessions[key]]}", repr(session))
    return _load_session(files, bin_ms, window_ms)
