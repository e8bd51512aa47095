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
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from probtwin.data.recording import Recording
from probtwin.errors import DataError

__all__ = ["load_nwb", "write_nwb"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _series_layout(x: np.ndarray, per_frame: bool) -> tuple[np.ndarray, np.ndarray, str]:
    n_trials = x.shape[0]
    if not per_frame:
        return x, np.arange(n_trials, dtype=float), json.dumps({"frames": None, "shape": list(x.shape)})
    frames = x.shape[1]
    data = x.reshape(n_trials * frames, *x.shape[2:])
    stamps = (np.arange(n_trials)[:, None] + np.arange(frames)[None, :] / frames).reshape(-1)
    return data, stamps, json.dumps({"frames": frames, "shape": list(x.shape)})


def _series(cls, name: str, x: np.ndarray, per_frame: bool, description: str, note: dict | None = None, **kwargs):
    """An NWB series of a per-trial or per-frame field, time first, with its layout in ``comments``."""
    data, stamps, layout = _series_layout(x, per_frame)
    comments = json.dumps({**json.loads(layout), **(note or {})})
    return cls(name=name, data=data, timestamps=stamps, comments=comments, description=description, **kwargs)


def _unfold(series) -> np.ndarray:
    layout = json.loads(series.comments)
    return np.asarray(series.data[:]).reshape(layout["shape"])


def write_nwb(recording: Recording, path: str | Path) -> Path:
    """Write a recording to an NWB file; :func:`load_nwb` reads it back exactly.

    Parameters
    ----------
    recording : Recording
    path : str or Path
        Output file, conventionally ``*.nwb``. An existing file is overwritten.

    Returns
    -------
    Path
    """
    from hdmf.common import DynamicTable, VectorData
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import BehavioralTimeSeries, EyeTracking, SpatialSeries
    from pynwb.epoch import TimeIntervals

    rec = recording
    path = Path(path)
    nwb = NWBFile(
        session_description=f"probtwin Recording {rec.name!r}",
        identifier=f"probtwin-{rec.name}",
        session_start_time=_EPOCH,
        session_id=rec.name,
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


def _labels(column) -> np.ndarray:
    values = np.asarray(column[:])
    if values.dtype.kind in "OS":
        values = np.array([v.decode() if isinstance(v, bytes) else v for v in values])
        values = values.astype(str) if values.dtype.kind == "O" else values
    return values


def load_nwb(path: str | Path) -> Recording:
    """Read a recording from an NWB file written by :meth:`Recording.to_nwb`.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Recording
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
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
        if "probtwin" not in nwb.processing or nwb.trials is None:
            raise DataError(
                "path", "an NWB file written by probtwin (trials table, probtwin module)", f"{path} without them"
            )
        module = nwb.processing["probtwin"]
        trials = nwb.trials
        trial_info = {c.name.removeprefix("info_"): _labels(c) for c in trials.columns if c.name.startswith("info_")}
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
            neuron_ids=_labels(neurons["neuron_id"]),
            neuron_area=_labels(neurons["area"]) if "area" in names else None,
            neuron_coords=np.asarray(neurons["coords"][:]) if "coords" in names else None,
            tiers=_labels(trials["tier"]),
            stimulus_ids=_labels(trials["stimulus_id"]),
            trial_info=trial_info,
            name=nwb.session_id or path.stem,
        )
    finally:
        io.close()
