"""What an NWB file holds that a recording can be read from: its interval tables and their
columns, its units table and its time series by name; the errors that list them."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from probtwin.errors import DataError

__all__ = ["describe_contents", "labels", "nwb_contents"]


# --------------------------------------------------------------------------------------------- inventory
def _series_of(nwb) -> dict[str, Any]:
    """Every TimeSeries in the file by name (``parent/name`` where names repeat)."""
    from pynwb import TimeSeries

    found = [obj for obj in nwb.objects.values() if isinstance(obj, TimeSeries)]
    names = [obj.name for obj in found]
    return {(obj.name if names.count(obj.name) == 1 else f"{obj.parent.name}/{obj.name}"): obj for obj in found}


def _kind(series) -> str:
    from pynwb.behavior import BehavioralEvents, BehavioralTimeSeries, EyeTracking, PupilTracking, SpatialSeries
    from pynwb.image import ImageSeries, IndexSeries
    from pynwb.ophys import RoiResponseSeries

    parent = series.parent
    if isinstance(series, RoiResponseSeries):
        return f"calcium traces ({parent.neurodata_type})"
    if isinstance(series, (ImageSeries, IndexSeries)):
        return series.neurodata_type
    if isinstance(parent, BehavioralEvents):
        return "events (BehavioralEvents)"
    if isinstance(parent, (EyeTracking, PupilTracking, BehavioralTimeSeries)) or isinstance(series, SpatialSeries):
        return f"behaviour ({parent.neurodata_type})"
    return "time series"


def nwb_contents(nwb) -> dict[str, Any]:
    """What an open NWB file holds that a recording can be read from.

    Parameters
    ----------
    nwb : pynwb.NWBFile

    Returns
    -------
    dict
        ``intervals``: {table: {"rows": int, "columns": [str]}}; ``units``: {"rows", "columns"} or
        None; ``series``: {name: {"kind": str, "shape": tuple}}, every time series by the name the
        ``responses``, ``stimuli``, ``behavior`` and ``gaze`` arguments of
        :func:`probtwin.load_nwb` take.
    """
    intervals = {
        name: {"rows": len(table), "columns": list(table.colnames)} for name, table in (nwb.intervals or {}).items()
    }
    units = None if nwb.units is None else {"rows": len(nwb.units), "columns": list(nwb.units.colnames)}
    series = {
        name: {"kind": _kind(s), "shape": tuple(s.data.shape) if s.data is not None else ()}
        for name, s in _series_of(nwb).items()
    }
    return {"intervals": intervals, "units": units, "series": series}


def describe_contents(contents: dict[str, Any]) -> str:
    """One line of what a file holds (for errors)."""
    tables = ", ".join(f"{k!r} ({v['rows']} rows: {', '.join(v['columns'])})" for k, v in contents["intervals"].items())
    units = "none" if contents["units"] is None else f"{contents['units']['rows']} units"
    series = ", ".join(f"{k!r} ({v['kind']}, shape {v['shape']})" for k, v in contents["series"].items())
    return f"the file holds interval tables: {tables or 'none'}; units table: {units}; series: {series or 'none'}"


def _refuse(nwb, field: str, expected: str, problem: str) -> DataError:
    return DataError(field, expected, f"{problem}; {describe_contents(nwb_contents(nwb))}")


# ------------------------------------------------------------------------------------------ table columns
def _raw(table, name: str):
    """A table's column object by its own name (``x_index`` is the index of ragged ``x``)."""
    return next((c for c in table.columns if c.name == name), None)


def labels(column) -> np.ndarray:
    """A table column's values, bytes and objects decoded to strings."""
    values = np.asarray(column[:])
    if values.dtype.kind in "OS":
        values = np.array([v.decode() if isinstance(v, bytes) else v for v in values])
        values = values.astype(str) if values.dtype.kind == "O" else values
    return values


def _column(table, name: str) -> np.ndarray:
    """A column's values per row: strings decoded; ragged columns joined with commas."""
    from hdmf.common import VectorIndex

    column = table[name]
    if isinstance(column, VectorIndex):
        return np.array([",".join(str(v) for v in row) for row in column[:]])
    return labels(column.data)


def _scalar_columns(table) -> dict[str, np.ndarray]:
    """The table's columns of one number or string per row (ragged text joined), by name; a
    warning names the others (references to other tables or series, arrays per row)."""
    from hdmf.common import DynamicTableRegion, VectorIndex

    out = {}
    for name in table.colnames:
        column = table[name]
        if isinstance(column, VectorIndex):
            if not isinstance(column.target, DynamicTableRegion):
                out[name] = _column(table, name)
        elif not isinstance(column, DynamicTableRegion):
            first = np.asarray(column.data[:1])
            if first.ndim == 1 and first.dtype.kind in "biufSOU":
                out[name] = _column(table, name)
    skipped = [name for name in table.colnames if name not in out]
    if skipped:
        warnings.warn(
            f"interval table {table.name!r}: columns {skipped} are not one number or label per row and are not "
            "read into trial_info",
            stacklevel=4,
        )
    return out
