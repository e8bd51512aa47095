"""Reading NWB 2.x files written by other tools (DANDI archives, NeuroConv, pynapple, suite2p ...).

A file is read as trials: the rows of one of its interval tables (or start and stop times the user
gives), each row's window of time, optionally cut into frames of ``bin_size`` seconds
(:mod:`probtwin.data.binning`). Responses are the units table's spike times counted per window and
frame, or calcium traces (a ``RoiResponseSeries``) averaged per window and frame; stimuli come
from an image series in the file or from the user's array indexed by an interval column;
behaviour and gaze are series resampled to the frames. Whatever the file lacks, the error names
what it holds (:func:`probtwin.data.nwb_inventory.nwb_contents`) and the argument that would
make it load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from probtwin.data.binning import FRAME_TOLERANCE, FrameGrid, bin_spike_times, frame_grid, resample_series
from probtwin.data.nwb_inventory import _column, _raw, _refuse, _scalar_columns, _series_of
from probtwin.errors import DataError

__all__ = ["read_trials"]


def _intervals(nwb, intervals: Any) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], str]:
    """Start and stop times of the trials' rows, their other columns and the table's name."""
    tables = dict(nwb.intervals or {})
    if intervals is None:
        if "trials" in tables:
            intervals = "trials"
        elif len(tables) == 1:
            intervals = next(iter(tables))
        else:
            raise _refuse(
                nwb,
                "intervals",
                "an interval table's name, or start times (trials,) or start and stop times (trials, 2) in seconds",
                "no trials table" if not tables else f"{len(tables)} tables and none named 'trials'",
            )
    if isinstance(intervals, str):
        if intervals not in tables:
            raise _refuse(nwb, "intervals", "the name of one of the file's interval tables", repr(intervals))
        table = tables[intervals]
        columns = _scalar_columns(table)
        starts = np.asarray(table["start_time"].data[:], dtype=float)
        stops = np.asarray(table["stop_time"].data[:], dtype=float)
        return starts, stops, columns, intervals
    times = np.asarray(intervals, dtype=float)
    if times.ndim == 1:
        return times, np.full(times.shape, np.nan), {}, "intervals"
    if times.ndim == 2 and times.shape[1] == 2:
        return times[:, 0], times[:, 1], {}, "intervals"
    raise DataError("intervals", "a table's name, start times (trials,) or (trials, 2)", f"shape {times.shape}")


def _windows(
    nwb, starts: np.ndarray, stops: np.ndarray, columns: dict[str, np.ndarray], window: Any, event_times: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each trial's window in absolute seconds."""
    if window is None:
        if np.isnan(stops).any():
            raise _refuse(
                nwb,
                "window",
                "(start, stop) in seconds from each row's start_time, or (event column, start, stop), where a "
                "row's stop_time is missing",
                f"stop_time NaN in {int(np.isnan(stops).sum())} of {stops.size} rows",
            )
        return starts, stops
    shape = "(start, stop) or (event column, start, stop) in seconds"
    if not isinstance(window, (tuple, list)) or len(window) not in (2, 3):
        raise DataError("window", shape, repr(window))
    *event, lo, hi = window
    if not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in (lo, hi)):
        raise DataError("window", shape, repr(window))
    anchor = starts
    if event:
        name = event[0]
        if not isinstance(name, str) or name not in columns:
            raise DataError("window", f"an event column of the interval table ({', '.join(columns)})", repr(name))
        if columns[name].dtype.kind not in "iuf":
            raise DataError("window", f"event times (numbers) in the column {name!r}", f"{columns[name].dtype}")
        anchor = np.asarray(columns[name], dtype=float)
        if np.isnan(anchor).any():
            raise DataError(
                "window",
                f"an event time in every row of {name!r} (select rows with rows=)",
                f"NaN in {int(np.isnan(anchor).sum())} rows",
            )
        if event_times == "auto":  # absolute: none before its row's start; relative: each before it
            absolute, relative = (anchor >= starts - 1e-9).all(), ((anchor >= 0) & (anchor < starts)).all()
            event_times = "absolute" if absolute else "relative" if relative else ""
            if not event_times:
                raise DataError(
                    "event_times",
                    f"'absolute' or 'relative' ({name!r} holds times both before and after their rows' starts)",
                    "'auto'",
                )
        if event_times == "relative":
            anchor = starts + anchor
        elif event_times != "absolute":
            raise DataError("event_times", "'auto', 'absolute' or 'relative'", repr(event_times))
    return anchor + float(lo), anchor + float(hi)


def _check_whole(window: Any, bin_size: float | None) -> None:
    if window is None or bin_size is None:
        return
    length = float(window[-1]) - float(window[-2])
    frames = length / bin_size
    if abs(frames - round(frames)) > FRAME_TOLERANCE * max(frames, 1):
        raise DataError("bin_size", f"a whole number of frames in the window of {length:.6g} s", f"{bin_size} s")


# ------------------------------------------------------------------------------------------- responses
def _timestamps(series) -> np.ndarray:
    return np.asarray(series.get_timestamps(), dtype=float)


def _values(series) -> np.ndarray:
    return np.asarray(series.data[:], dtype=float) * series.conversion + getattr(series, "offset", 0.0)


def _named_series(nwb, name: str, field: str, kinds: tuple[type, ...] = ()):
    series = _series_of(nwb)
    if name not in series or (kinds and not isinstance(series[name], kinds)):
        types = f" ({'/'.join(k.__name__ for k in kinds)})" if kinds else ""
        expected = f"the name of one of the file's series{types}"
        raise _refuse(nwb, field, expected, repr(name))
    return series[name]


def _unit_metadata(units) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Area and location of each unit: the units table's own columns, else its electrodes' row
    (first electrode), else its electrode group."""
    names = units.colnames
    area = coords = None
    electrodes = None
    if "electrodes" in names:
        region, ends = _raw(units, "electrodes"), _raw(units, "electrodes_index")
        flat = np.asarray(region.data[:])
        first = flat if ends is None else flat[np.concatenate([[0], np.asarray(ends.data[:])[:-1]])]
        electrodes = (region.table, first)
    if "location" in names:
        area = _column(units, "location")
    if (area is None or (area == "").all()) and electrodes is not None and "location" in electrodes[0].colnames:
        area = _column(electrodes[0], "location")[electrodes[1]]
    if (area is None or (area == "").all()) and "electrode_group" in names:
        area = np.array([str(g.location) for g in units["electrode_group"].data[:]])
    if electrodes is not None and {"x", "y", "z"} <= set(electrodes[0].colnames):
        xyz = np.stack([np.asarray(electrodes[0][c].data[:], dtype=float)[electrodes[1]] for c in "xyz"], axis=1)
        coords = xyz if np.isfinite(xyz).all() else None
    if area is not None and (area == "").all():
        area = None
    return area, coords


def _spike_responses(nwb, grid: FrameGrid) -> tuple[np.ndarray, dict[str, Any]]:
    units = nwb.units
    if units is None or "spike_times" not in units.colnames:
        raise _refuse(nwb, "responses", "'units' with spike times", "no units table with spike_times")
    flat = np.asarray(_raw(units, "spike_times").data[:], dtype=float)
    ends = np.asarray(_raw(units, "spike_times_index").data[:])
    spikes = np.split(flat, ends[:-1])
    area, coords = _unit_metadata(units)
    meta = {"neuron_ids": np.asarray(units.id[:]), "neuron_area": area, "neuron_coords": coords}
    return bin_spike_times(spikes, grid), meta


def _roi_metadata(series) -> dict[str, Any]:
    rows = np.asarray(series.rois.data[:])
    segmentation = series.rois.table
    coords = None
    if "image_mask" in segmentation.colnames:
        masks = np.asarray(segmentation["image_mask"].data[:], dtype=float)[rows]
        if masks.ndim == 3:  # centroid (x, y) in pixels of each ROI's weighted mask
            total = masks.sum(axis=(1, 2))
            ys, xs = np.mgrid[: masks.shape[1], : masks.shape[2]]
            coords = np.stack([(masks * xs).sum((1, 2)) / total, (masks * ys).sum((1, 2)) / total], axis=1)
    plane = getattr(segmentation, "imaging_plane", None)
    location = str(getattr(plane, "location", "") or "")
    return {
        "neuron_ids": np.asarray(segmentation.id[:])[rows],
        "neuron_area": None if not location else np.full(rows.size, location),
        "neuron_coords": coords if coords is not None and np.isfinite(coords).all() else None,
    }


def _responses(nwb, responses: str | None, grid: FrameGrid) -> tuple[np.ndarray, dict[str, Any]]:
    from pynwb.ophys import RoiResponseSeries

    if responses is None:
        rois = [name for name, s in _series_of(nwb).items() if isinstance(s, RoiResponseSeries)]
        has_units = nwb.units is not None and "spike_times" in nwb.units.colnames
        if has_units and not rois:
            responses = "units"
        elif len(rois) == 1 and not has_units:
            responses = rois[0]
        else:
            raise _refuse(
                nwb,
                "responses",
                "'units' (spike counts) or the name of a RoiResponseSeries (calcium traces)",
                "no single source of responses" if (has_units or rois) else "no units table and no RoiResponseSeries",
            )
    if responses == "units":
        return _spike_responses(nwb, grid)
    series = _named_series(nwb, responses, "responses", (RoiResponseSeries,))
    traces = resample_series(_timestamps(series), _values(series), grid, f"responses ({responses!r})")
    return traces, _roi_metadata(series)


# --------------------------------------------------------------------------------- behaviour and stimuli
def _behavior(nwb, names: Sequence[str], grid: FrameGrid, field: str) -> np.ndarray:
    from pynwb.behavior import BehavioralEvents

    parts = []
    for name in names:  # one array per named series, at load time
        series = _named_series(nwb, name, field)
        times = _timestamps(series)
        if isinstance(series.parent, BehavioralEvents):  # event times: counts per frame
            parts.append(bin_spike_times([times], grid))
        else:
            parts.append(resample_series(times, _values(series), grid, f"{field} ({name!r})"))
    return np.concatenate(parts, axis=-1)


def _image_frames(series) -> np.ndarray:
    """An image series' frames as (frames, C, H, W)."""
    if series.data is None or len(series.data) == 0:
        external = getattr(series, "external_file", None)
        raise DataError(
            "stimuli",
            f"image frames stored in {series.name!r} (or the images as an array with stimulus_index=)",
            f"frames in external files {list(external[:3])}" if external is not None else "no frames",
        )
    return _channels_first(np.asarray(series.data[:]), series.name)


def _channels_first(x: np.ndarray, name: str) -> np.ndarray:
    """Frames (frames, H, W) or (frames, H, W, C) as (frames, C, H, W)."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        return np.moveaxis(x, 3, 1)
    raise DataError("stimuli", f"image frames (frames, H, W) or (frames, H, W, C) in {name!r}", str(x.shape))


def _shown(series, times: np.ndarray, field: str) -> np.ndarray:
    """Index of the sample of a series on show at each time (the last at or before it)."""
    stamps = _timestamps(series)
    shown = np.searchsorted(stamps, times + 1e-9, side="right") - 1
    if (shown < 0).any():
        raise DataError(
            field, f"the series {series.name!r} on show from {stamps[0]:.4g} s", f"times from {times.min():.4g} s"
        )
    return shown


def _file_stimuli(nwb, name: str, grid: FrameGrid) -> tuple[np.ndarray, np.ndarray]:
    """The images on show at each trial's window start, or at each frame's start: (stimuli, ids)."""
    from pynwb.image import ImageSeries, IndexSeries

    series = _named_series(nwb, name, "stimuli", (ImageSeries, IndexSeries))
    times = grid.edges[:, :-1] if grid.per_frame else grid.edges[:, :1]
    shown = _shown(series, times.ravel(), "stimuli").reshape(times.shape)
    if isinstance(series, IndexSeries):
        index = np.asarray(series.data[:], dtype=int)[shown]
        if series.indexed_images is not None:
            images = series.indexed_images
            order = getattr(images, "order_of_images", None)
            keys = [image.name for image in order.data] if order is not None else list(images.images)
            library = _channels_first(np.stack([np.asarray(images.images[k].data[:]) for k in keys]), images.name)
        else:
            library = _image_frames(series.indexed_timeseries)
    else:
        index, library = shown, _image_frames(series)
    if grid.per_frame:
        videos = np.moveaxis(library[index], 1, 2)  # (trials, C, frames, H, W)
        return videos, np.array([",".join(map(str, row)) for row in index])
    return library[index[:, 0]], index[:, 0]


def _task(columns: dict[str, np.ndarray], names: Sequence[str], grid: FrameGrid) -> np.ndarray:
    """Interval columns as task variables per frame: numbers as they are, labels one-hot."""
    parts = []
    for name in names:
        if name not in columns:
            raise DataError("task", f"columns of the interval table ({', '.join(columns)})", repr(name))
        values = columns[name]
        if values.dtype.kind in "biuf":
            parts.append(values.astype(float)[:, None])
        else:
            levels = np.unique(values)
            parts.append((values[:, None] == levels[None, :]).astype(float))
    x = np.concatenate(parts, axis=1)
    return grid.fold(np.broadcast_to(x[:, None, :], (grid.n_trials, grid.n_frames, x.shape[1])).copy())


# ------------------------------------------------------------------------------------------------ read
def _per_row(value: Any, columns: dict[str, np.ndarray], field: str) -> np.ndarray | None:
    """A per-trial label given as an interval column's name or as an array."""
    if value is None or not isinstance(value, str):
        return value
    if value not in columns:
        raise DataError(field, f"a column of the interval table ({', '.join(columns)}) or an array", repr(value))
    return columns[value]


def _rows(rows: Any, n_rows: int, table: str) -> np.ndarray:
    """Indices of the selected rows: all, integer indices or a boolean mask."""
    if rows is None:
        return np.arange(n_rows)
    rows = np.asarray(rows)
    expected = f"indices in [0, {n_rows}) or a boolean mask of the {n_rows} rows of {table!r}"
    if rows.dtype == bool and rows.shape == (n_rows,):
        return np.flatnonzero(rows)
    if (
        rows.ndim == 1
        and rows.dtype.kind in "iu"
        and (rows.size == 0 or (rows.min() >= -n_rows and rows.max() < n_rows))
    ):
        return np.arange(n_rows)[rows]
    raise DataError("rows", expected, f"{rows.dtype} of shape {rows.shape}")


def _names(value: Any, field: str) -> list[str] | None:
    """Series names: one name or a sequence of names."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(field, "a series' name or a list of names", repr(value))
    return list(names)


def _gaze_name(gaze: Any) -> list[str]:
    if not isinstance(gaze, str):
        raise DataError("gaze", "the name of the eye-position series", repr(gaze))
    return [gaze]


def read_trials(
    nwb,
    *,
    intervals: Any = None,
    window: Any = None,
    bin_size: float | None = None,
    responses: str | None = None,
    stimuli: Any = None,
    stimulus_index: str | None = None,
    task: Sequence[str] | None = None,
    behavior: Sequence[str] | None = None,
    gaze: str | None = None,
    tiers: Any = None,
    stimulus_ids: Any = None,
    rows: Any = None,
    event_times: str = "auto",
) -> dict[str, Any]:
    """The arguments of a :class:`~probtwin.Recording` read from an open NWB file (see
    :func:`probtwin.load_nwb` for the arguments)."""
    starts, stops, columns, table = _intervals(nwb, intervals)
    n_rows = starts.size
    rows = _rows(rows, n_rows, table)
    if rows.size == 0:
        raise DataError("rows", f"at least one of the {n_rows} rows of {table!r}", "none selected")
    columns = {k: v[rows] for k, v in columns.items()}
    starts, stops = starts[rows], stops[rows]
    lo, hi = _windows(nwb, starts, stops, columns, window, event_times)
    _check_whole(window, bin_size)
    grid = frame_grid(lo, hi, bin_size)
    y, meta = _responses(nwb, responses, grid)

    ids = None
    if stimuli is not None and task is not None:
        raise DataError("task", "no task variables where stimuli are given (one input per recording)", repr(task))
    if isinstance(stimuli, str):
        stimuli, ids = _file_stimuli(nwb, stimuli, grid)
    elif stimuli is not None:
        if stimulus_index is None or stimulus_index not in columns:
            raise DataError(
                "stimulus_index",
                f"the interval column that indexes the stimuli array ({', '.join(columns) or 'no columns'})",
                repr(stimulus_index),
            )
        library = np.asarray(stimuli)
        index = np.asarray(columns[stimulus_index])
        if index.dtype.kind not in "iu":
            raise DataError("stimulus_index", "a column of integer indices into the stimuli", f"{index.dtype}")
        if index.min() < 0 or index.max() >= library.shape[0]:
            raise DataError(
                "stimulus_index",
                f"integer indices into the {library.shape[0]} stimuli",
                f"{index.dtype} from {index.min()} to {index.max()}",
            )
        stimuli, ids = library[index], index
    elif task is not None:
        if not grid.per_frame:
            raise DataError("bin_size", "a frame length for task variables (a time series)", "None")
        stimuli = _task(columns, _names(task, "task"), grid)
    elif not grid.per_frame:
        raise _refuse(
            nwb,
            "stimuli",
            "images for one response per trial (an image series' name, or an array with stimulus_index=), "
            "or bin_size= for responses per frame",
            "neither",
        )

    info = {k: v for k, v in columns.items() if k not in ("start_time", "stop_time")}
    info["window_start"] = lo
    return {
        "stimuli": stimuli,
        "responses": y,
        "behavior": None if behavior is None else _behavior(nwb, _names(behavior, "behavior"), grid, "behavior"),
        "gaze": None if gaze is None else _behavior(nwb, _gaze_name(gaze), grid, "gaze"),
        "tiers": _per_row(tiers, columns, "tiers"),
        "stimulus_ids": ids if stimulus_ids is None else _per_row(stimulus_ids, columns, "stimulus_ids"),
        "trial_info": info,
        **meta,
    }
