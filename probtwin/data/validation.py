"""Checks on the fields of a recording; each failure is a DataError naming the field."""

from __future__ import annotations

from typing import Any

import numpy as np

from probtwin.data.arrays import TrialArray, TrialStack
from probtwin.errors import DataError

__all__ = [
    "TIERS",
    "check_array",
    "check_finite",
    "check_labels",
    "describe",
]

#: The tier labels a recording may carry.
TIERS = ("train", "validation", "test")

_CHUNK_BYTES = 64 * 2**20


def describe(x: Any) -> str:
    """Short description of a value for error messages: its shape and dtype, or its type."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"a {type(x).__name__}"


def check_array(
    x: Any,
    field: str,
    ndims: tuple[int, ...],
    *,
    numeric: bool = True,
    allow_stack: bool = True,
) -> Any:
    """Return ``x`` as an array-like with one of the allowed numbers of dimensions.

    Parameters
    ----------
    x : array-like
        The field's value. ``numpy.ndarray``, ``numpy.memmap``, :class:`TrialStack` and
        :class:`TrialArray` are kept as they are (no copy); anything else goes through
        ``numpy.asarray``.
    field : str
        Field name for errors.
    ndims : tuple of int
        Allowed numbers of dimensions.
    numeric : bool
        Require a boolean, integer or real floating dtype.
    allow_stack : bool
        Accept lazily read trial stacks.
    """
    if isinstance(x, (TrialStack, TrialArray)):
        if not allow_stack:
            x = np.asarray(x)
    elif not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as err:
            raise DataError(field, "a rectangular numeric array", f"{type(x).__name__} ({err})") from None
    if x.ndim not in ndims:
        allowed = " or ".join(f"{d}-D" for d in ndims)
        raise DataError(field, f"a {allowed} array", f"{x.ndim}-D, {describe(x)}")
    if numeric:
        kind = np.dtype(x.dtype).kind
        if kind not in "biuf":
            raise DataError(field, "a numeric (bool, integer or float) dtype", f"dtype {x.dtype}")
    return x


def check_finite(x: Any, field: str) -> None:
    """Raise if a float array holds NaN or inf; memory-mapped arrays are read in chunks.

    Lazily read trial stacks are checked trial by trial as they are read instead.
    """
    while isinstance(x, TrialArray):
        x = x.source  # check the whole source: a view's trials are among its rows
    if isinstance(x, TrialStack):
        return  # checked trial by trial as it is read
    if np.dtype(x.dtype).kind != "f":
        return
    n = x.shape[0]
    per_trial = max(1, int(np.prod(x.shape[1:])) * x.dtype.itemsize)
    step = max(1, _CHUNK_BYTES // per_trial)
    for start in range(0, n, step):
        block = np.asarray(x[start : start + step])
        if not np.isfinite(block).all():
            bad = tuple(int(b) for b in np.argwhere(~np.isfinite(block))[0])
            where = (bad[0] + start, *bad[1:])
            raise DataError(field, "finite values", f"{block[bad]} at index {where}")


def check_labels(x: Any, field: str, length: int, length_name: str) -> np.ndarray:
    """A 1-D array of labels (strings or integers) of the given length."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError(field, f"a 1-D array of length {length} ({length_name})", f"{arr.ndim}-D, {describe(arr)}")
    if len(arr) != length:
        raise DataError(field, f"length {length} ({length_name})", f"length {len(arr)}")
    if arr.dtype.kind == "O":
        if not all(isinstance(v, (str, int, np.integer)) for v in arr):
            raise DataError(field, "strings or integers", "objects of other types")
        arr = arr.astype(str)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise DataError(field, "labels without NaN", "NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise DataError(field, "integer or string labels", "non-integer floats")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iuUSb":
        raise DataError(field, "string or integer labels", f"dtype {arr.dtype}")
    if arr.dtype.kind == "S":
        arr = arr.astype(str)
    return arr
