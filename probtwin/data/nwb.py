"""Reading and writing recordings as Neurodata Without Borders (NWB) files, with pynwb.

Layout of a file written by :meth:`Recording.to_nwb`:

- ``trials`` table: one row per trial, nominal times (trial ``t`` spans ``[t, t + 1)`` s), with
  columns ``tier``, ``stimulus_id`` and one per ``trial_info`` key;
- ``stimulus/stimuli``: a ``TimeSeries`` of the stimuli;
- ``processing/probtwin/responses``: a ``TimeSeries`` of the responses;
- ``processing/probtwin/neurons``: a table with ``neuron_id``, ``area`` and ``coords``;
- ``processing/behavior/BehavioralTimeSeries/behavior`` and
  ``processing/behavior/EyeTracking/gaze`` (a ``SpatialSeries``).

Per-frame fields are stored with time first, one sample per frame (frame ``f`` of trial ``t`` at
``t + f / frames`` s), as NWB expects; the ``comments`` of each series say how to fold it back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from probtwin.data.nwb_inventory import labels
from probtwin.data.nwb_inventory import nwb_contents as _contents
from probtwin.data.nwb_read import read_trials
from probtwin.data.recording import Recording
from probtwin.errors import DataError

__all__ = ["load_nwb", "nwb_contents", "write_nwb"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _series_layout(x: np.ndarray, per_frame: bool) -> tuple[np.ndarray, float, str]:
    """Time-first data, the sampling rate of its nominal times (a trial a second) and the layout."""
    n_trials = x.shape[0]
    if not per_frame:
        return x, 1.0, json.dumps({"frames": None, "shape": list(x.shape)})
    frames = x.shape[1]
    data = x.reshape(n_trials * frames, *x.shape[2:])
    return data, float(frames), json.dumps({"frames": frames, "shape": list(x.shape)})


def _series(cls, name: str, x: np.ndarray, per_frame: bool, description: str, note: dict | None = None, **kwargs):
    """An NWB series of a per-trial or per-frame field, time first, with its layout in ``comments``."""
    data, rate, layout = _series_layout(x, per_frame)
    comments = json.dumps({**json.loads(layout), **(note or {})})
    return cls(name=name, data=data, starting_time=0.0, rate=rate, comments=comments, description=description, **kwargs)


def _unfold(series) -> np.ndarray:
    layout = json.loads(series.comments)
    return np.asarray(series.data[:]).reshape(layout["shape"])


def write_nwb(
    recording: Recording,
    path: str | Path,
    *,
    subject: dict | None = None,
    session_start_time: datetime | None = None,
    **metadata,
) -> Path:
    """Write a recording to an NWB file; :func:`load_nwb` reads it back exactly.

    Series are time first at nominal times (trial ``t`` spans ``[t, t + 1)`` s, its frames evenly
    spaced), so pynapple and other NWB tools open the file. For a file that passes
    ``nwbinspector`` (and DANDI's upload checks), give the subject and the session's date: a
    recording does not hold them and probtwin does not invent them.

    Parameters
    ----------
    recording : Recording
    path : str or Path
        Output file, conventionally ``*.nwb``. An existing file is overwritten.
    subject : dict, optional
        Arguments of ``pynwb.file.Subject``: ``subject_id``, ``species`` (Latin binomial),
        ``sex``, ``age`` (ISO 8601 duration) ...
    session_start_time : datetime, optional
        When the session began (time-zone aware); by default 1970-01-01 UTC.
    **metadata
        Further ``pynwb.NWBFile`` fields: ``experimenter``, ``institution``, ``lab``,
        ``experiment_description``, ``keywords`` ...

    Returns
    -------
    Path
    """
    from hdmf.common import DynamicTable, VectorData
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import BehavioralTimeSeries, EyeTracking, SpatialSeries
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject

    rec = recording
    path = Path(path)
    nwb = NWBFile(
        session_description=f"probtwin Recording {rec.name!r}",
        identifier=f"probtwin-{rec.name}",
        session_start_time=session_start_time or _EPOCH,
        session_id=rec.name,
        subject=None if subject is None else Subject(**subject),
        **metadata,
    )
    n = rec.n_trials
    columns = [
        VectorData(name="start_time", description="nominal trial start (s)", data=np.arange(n, dtype=float)),
        VectorData(name="stop_time", description="nominal trial end (s)", data=np.arange(1, n + 1, dtype=float)),
        VectorData(name="tier", description="train, validation or test", data=rec.tiers.astype(str)),
        VectorData(name="stimulus_id", description="stimulus shown; equal ids are repeats", data=rec.stimulus_ids),
    ]
    for key, value in rec.trial_info.items():
        columns.append(VectorData(name=f"info_{key}", description=f"trial_info[{key!r}]", data=value))
    nwb.trials = TimeIntervals(name="trials", description="probtwin trials", columns=columns)

    per_frame = rec.n_frames is not None
    if rec.stimuli is not None:
        x = np.asarray(rec.stimuli)
        if rec.stimulus_kind == "videos":
            x = np.moveaxis(x, 2, 1)  # (trials, frames, C, H, W): frames next to trials
        stimuli = _series(
            TimeSeries,
            "stimuli",
            x,
            rec.stimulus_kind in ("videos", "task"),
            f"probtwin stimuli ({rec.stimulus_kind})",
            {"kind": rec.stimulus_kind},
            unit="a.u.",
        )
        nwb.add_stimulus(stimuli)
    module = nwb.create_processing_module("probtwin", "responses and neuron table written by probtwin")
    module.add(
        _series(
            TimeSeries,
            "responses",
            np.asarray(rec.responses),
            per_frame,
            "neural responses, neurons in the order of the neurons table",
            unit="a.u.",
        )
    )
    neuron_columns = [VectorData(name="neuron_id", description="unit id", data=rec.neuron_ids)]
    if rec.neuron_area is not None:
        neuron_columns.append(VectorData(name="area", description="brain area", data=rec.neuron_area))
    if rec.neuron_coords is not None:
        neuron_columns.append(VectorData(name="coords", description="cortical coordinates", data=rec.neuron_coords))
    module.add(DynamicTable(name="neurons", description="neurons of the responses", columns=neuron_columns))

    if rec.behavior is not None or rec.gaze is not None:
        behavior_module = nwb.create_processing_module("behavior", "behaviour and eye tracking")
        if rec.behavior is not None:
            b = np.asarray(rec.behavior)
            behavior_module.add(
                BehavioralTimeSeries(
                    time_series=_series(TimeSeries, "behavior", b, b.ndim == 3, "behavioural variables", unit="a.u.")
                )
            )
        if rec.gaze is not None:
            g = np.asarray(rec.gaze)
            behavior_module.add(
                EyeTracking(
                    spatial_series=_series(
                        SpatialSeries,
                        "gaze",
                        g,
                        g.ndim == 3,
                        "eye position (x, y)",
                        reference_frame="stimulus coordinates",
                    )
                )
            )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def load_nwb(
    path: str | Path,
    intervals: str | np.ndarray | None = None,
    window: tuple | None = None,
    bin_size: float | None = None,
    responses: str | None = None,
    stimuli: str | np.ndarray | None = None,
    *,
    stimulus_index: str | None = None,
    task: Sequence[str] | None = None,
    behavior: Sequence[str] | None = None,
    gaze: str | None = None,
    tiers: str | np.ndarray | None = None,
    stimulus_ids: str | np.ndarray | None = None,
    rows: np.ndarray | None = None,
    event_times: str = "auto",
    name: str | None = None,
) -> Recording:
    """Read a recording from an NWB 2.x file.

    A file written by :meth:`Recording.to_nwb` read with no further arguments comes back exactly.
    Any other file (DANDI, NeuroConv, pynapple, suite2p ...) is read as trials: the rows of an
    interval table, each row's window of time, optionally cut into frames
    (:mod:`probtwin.data.binning`; frames are half-open, a trial's last partial frame is not
    kept, shorter trials are padded with NaN).

    Parameters
    ----------
    path : str or Path
    intervals : str or ndarray, optional
        The interval table whose rows are the trials (``"trials"``, ``"epochs"`` or any table under
        ``intervals/``); by default ``"trials"``, or the file's only table. Or the trials' start
        times, shape (trials,), or start and stop times, shape (trials, 2), in seconds.
    window : tuple, optional
        ``(start, stop)`` in seconds from each row's ``start_time``, or ``(column, start, stop)``
        from an event column's time (e.g. ``("go_cue_time", -0.5, 1.0)``). Needed where
        ``stop_time`` is missing or NaN; by default each row's ``[start_time, stop_time)``.
    bin_size : float, optional
        Frame length in seconds: responses per frame (trials, frames, neurons). By default one
        response per trial (trials, neurons), which needs image stimuli.
    responses : str, optional
        ``"units"``: the units table's spike times counted per window and frame; or the name of a
        ``RoiResponseSeries``: calcium traces averaged per window and frame. By default whichever
        of the two the file holds.
    stimuli : str or ndarray, optional
        The name of an ``ImageSeries``, ``OpticalSeries`` or ``IndexSeries``: the image on show at
        each window's start (or each frame's start: videos); or an array of stimuli
        (n_stimuli, C, H, W) indexed by the interval column ``stimulus_index``.
    stimulus_index : str, optional
        The interval column of integer indices into an array of ``stimuli``.
    task : sequence of str, optional
        Interval columns as task variables per frame (numbers as they are, labels one-hot), the
        stimuli of a time series; needs ``bin_size``.
    behavior : sequence of str, optional
        Series (``BehavioralTimeSeries``, ``PupilTracking`` ...) averaged per window and frame,
        one feature per series column; event series (``BehavioralEvents``) counted per frame.
    gaze : str, optional
        The eye-position series (``EyeTracking``'s ``SpatialSeries``), averaged per frame.
    tiers, stimulus_ids : str or ndarray, optional
        An interval column's name or an array per trial (see :class:`Recording`).
    rows : array-like, optional
        Indices or a boolean mask of the interval table's rows to read.
    event_times : {"auto", "absolute", "relative"}
        Whether an event column of ``window`` holds session times or times from each row's
        start; ``"auto"``: absolute if no event precedes its row's start, else relative.
    name : str, optional
        The recording's name; by default the file's session id or its stem.

    Returns
    -------
    Recording
        Every scalar column of the interval table in ``trial_info``, with ``window_start`` (s);
        neuron ids, areas and coordinates from the units, electrodes or imaging-plane tables.

    Raises
    ------
    DataError
        Naming what the file holds (:func:`probtwin.data.nwb_contents`) and the argument that
        would make it load.

    Examples
    --------
    >>> rec = pt.load_nwb("session.nwb", window=("go_cue_time", -0.5, 1.0), bin_size=0.05)  # doctest: +SKIP
    """
    path = Path(path)
    nwb_args = {
        "intervals": intervals,
        "window": window,
        "bin_size": bin_size,
        "responses": responses,
        "stimuli": stimuli,
        "stimulus_index": stimulus_index,
        "task": task,
        "behavior": behavior,
        "gaze": gaze,
        "tiers": tiers,
        "stimulus_ids": stimulus_ids,
        "rows": rows,
    }
    with _open(path) as nwb:
        if "probtwin" in nwb.processing and all(v is None for v in nwb_args.values()):
            return _read_probtwin(nwb, path, name)
        fields = read_trials(nwb, event_times=event_times, **nwb_args)
        return Recording(name=name or nwb.session_id or path.stem, **fields)


@contextmanager
def _open(path: Path):
    """An NWB file opened for reading; a DataError for a file that is not one."""
    from pynwb import NWBHDF5IO

    if not path.is_file():
        raise DataError("path", "an existing NWB file", f"no file at {path}")
    io = None
    try:
        io = NWBHDF5IO(str(path), "r")
        nwb = io.read()
    except Exception as err:  # h5py / hdmf raise many types for a file that is not NWB
        if io is not None:  # opened, but not readable as NWB: close it before refusing
            io.close()
        raise DataError("path", "an NWB (HDF5) file", f"{path} ({type(err).__name__}: {err})") from None
    try:
        yield nwb
    finally:
        io.close()


def nwb_contents(path: str | Path) -> dict:
    """What an NWB file holds that :func:`load_nwb` can read: its interval tables, units table
    and series (see :func:`probtwin.data.nwb_inventory.nwb_contents`).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
    """
    with _open(Path(path)) as nwb:
        return _contents(nwb)


def _read_probtwin(nwb, path: Path, name: str | None = None) -> Recording:
    """The exact recording of a file that :func:`write_nwb` wrote."""
    module = nwb.processing["probtwin"]
    trials = nwb.trials
    trial_info = {c.name.removeprefix("info_"): labels(c) for c in trials.columns if c.name.startswith("info_")}
    neurons = module["neurons"]
    names = neurons.colnames
    stimuli = _unfold(nwb.stimulus["stimuli"]) if "stimuli" in nwb.stimulus else None
    if stimuli is not None and json.loads(nwb.stimulus["stimuli"].comments)["kind"] == "videos":
        stimuli = np.moveaxis(stimuli, 1, 2)
    behavior = gaze = None
    if "behavior" in nwb.processing:
        bm = nwb.processing["behavior"]
        if "BehavioralTimeSeries" in bm.data_interfaces:
            behavior = _unfold(bm["BehavioralTimeSeries"]["behavior"])
        if "EyeTracking" in bm.data_interfaces:
            gaze = _unfold(bm["EyeTracking"]["gaze"])
    return Recording(
        stimuli,
        _unfold(module["responses"]),
        behavior=behavior,
        gaze=gaze,
        neuron_ids=labels(neurons["neuron_id"]),
        neuron_area=labels(neurons["area"]) if "area" in names else None,
        neuron_coords=np.asarray(neurons["coords"][:]) if "coords" in names else None,
        tiers=labels(trials["tier"]),
        stimulus_ids=labels(trials["stimulus_id"]),
        trial_info=trial_info,
        name=name or nwb.session_id or path.stem,
    )
