"""Array-likes for per-trial fields: views by trial and lazily read trial stacks.

Every per-trial field of a :class:`~probtwin.Recording` (stimuli, responses, behaviour, gaze) is
exposed as a :class:`TrialArray`: a window, by trial index, onto a source that is an in-memory
array, a memory-mapped array or a :class:`TrialStack` of files read on demand. Indexing a
``TrialArray`` reads only the trials asked for; ``numpy.asarray`` reads them all.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from probtwin.data.padding import frame_counts
from probtwin.errors import DataError

__all__ = ["TrialArray", "TrialStack", "as_trial_index"]


def as_trial_index(index: Any, n: int, field: str = "index") -> np.ndarray:
    """Turn an int, slice, boolean mask or integer array into positions ``0 <= i < n``.

    Parameters
    ----------
    index : int, slice, array-like of int or bool
        Which trials.
    n : int
        Number of trials indexed into.
    field : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
    """
    if isinstance(index, slice):
        return np.arange(n, dtype=np.int64)[index]
    idx = np.asarray(index)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise DataError(field, f"a boolean mask of shape ({n},)", f"shape {idx.shape}")
        return np.flatnonzero(idx).astype(np.int64)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise DataError(field, "integer positions or a boolean mask", f"dtype {idx.dtype}")
    idx = idx.astype(np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise DataError(field, f"positions in [-{n}, {n})", f"range [{idx.min()}, {idx.max()}]")
    return np.where(idx < 0, idx + n, idx)


class TrialStack:
    """Trials stored one file each, read on demand (Sensorium's ``data/<field>/<i>.npy``).

    Parameters
    ----------
    paths : sequence of str
        One file a trial, in trial order: paths in a folder, or member names of ``archive``.
    field : str
        Field name for error messages (``"images"``, ``"responses"``, ...).
    transform : callable, optional
        Applied to each trial's array after reading (e.g. a transpose to probtwin's axis order).
    archive : str or Path, optional
        A ``.zip`` file that holds ``paths`` as members.
    frame_axis : int, optional
        The frame axis of a trial's array (after ``transform``), for per-frame fields of trials
        that differ in length: trailing frames that are NaN throughout are padding
        (:mod:`probtwin.data.padding`), not an error.
    frames : int, optional
        With ``frame_axis``: every trial is padded with NaN frames to this length (its files
        may be shorter, never longer).

    Notes
    -----
    The shape of every trial is taken from the first file (after padding); a trial whose shape
    differs, or that holds inf or NaN other than trailing padding, raises
    :class:`~probtwin.DataError` naming the field and the trial when it is read. Nothing is
    cropped or filled.
    """

    def __init__(
        self,
        paths: Sequence[str],
        field: str,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        archive: str | Path | None = None,
        frame_axis: int | None = None,
        frames: int | None = None,
    ) -> None:
        if len(paths) == 0:
            raise DataError(field, "at least one trial file", "none")
        if frames is not None and frame_axis is None:
            raise DataError("frames", "a frame_axis to pad along", "frame_axis=None")
        self.frame_axis, self.frames = frame_axis, frames
        self.paths = list(paths)
        self.field = field
        self.transform = transform
        self.archive = None if archive is None else str(archive)
        self._zip: zipfile.ZipFile | None = None
        self._lock = threading.Lock()
        first = self._read(0, check=False)
        self._trial_shape = first.shape
        self._dtype = first.dtype

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_zip"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _read(self, i: int, check: bool = True) -> np.ndarray:
        name = self.paths[i]
        if self.archive is None:
            arr = np.load(name, allow_pickle=False)
        else:
            with self._lock:
                if self._zip is None:
                    self._zip = zipfile.ZipFile(self.archive)
                raw = self._zip.read(name)
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        if self.transform is not None:
            arr = self.transform(arr)
        if self.frames is not None:
            arr = self._pad(arr, i, name)
        if check:
            if arr.shape != self._trial_shape:
                raise DataError(
                    f"{self.field}[{i}]",
                    f"shape {self._trial_shape} like the first trial",
                    f"shape {arr.shape} in {name}",
                )
            if self.frame_axis is not None:
                frame_counts(arr[None], f"{self.field}[{i}] ({name})", self.frame_axis + 1)
            elif np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                raise DataError(f"{self.field}[{i}]", "finite values", f"NaN or inf in {name}")
        return arr

    def _pad(self, arr: np.ndarray, i: int, name: str) -> np.ndarray:
        """A trial padded with NaN frames to ``frames`` (floats: NaN marks padding)."""
        length = arr.shape[self.frame_axis]
        if length > self.frames:
            raise DataError(f"{self.field}[{i}]", f"at most {self.frames} frames", f"{length} in {name}")
        arr = arr.astype(np.result_type(arr.dtype, np.float32), copy=False)
        if length == self.frames:
            return arr
        width = [(0, 0)] * arr.ndim
        width[self.frame_axis] = (0, self.frames - length)
        return np.pad(arr, width, constant_values=np.nan)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self._trial_shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        if isinstance(index, (int, np.integer)):
            out = self._read(int(as_trial_index(index, len(self))[0]))
            return out[rest] if rest else out
        idx = as_trial_index(index, len(self), self.field)
        out = np.empty((len(idx), *self._trial_shape), dtype=self._dtype)
        for k, i in enumerate(idx):  # one file a trial: the loop is the I/O itself
            out[k] = self._read(int(i))
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[slice(None)]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        where = self.archive or str(Path(self.paths[0]).parent)
        return f"TrialStack({self.field!r}, shape={self.shape}, dtype={self.dtype}, from {where!r})"


class TrialArray(NDArrayOperatorsMixin):
    """A view, by trial, of an array-like source; trials come first.

    Parameters
    ----------
    source : numpy.ndarray, numpy.memmap or TrialStack
        The data of the parent recording, shape (trials, ...).
    index : numpy.ndarray of int, optional
        Positions of this view's trials in ``source``; ``None`` for all of them.

    Notes
    -----
    No data are copied when a view is made; ``view[i]``, ``view[a:b]``, ``view[mask]`` and
    ``numpy.asarray(view)`` read only the trials they ask for. Arithmetic and numpy functions
    work on it as on the materialised array.

    Examples
    --------
    >>> import numpy as np
    >>> a = TrialArray(np.arange(12.0).reshape(6, 2), index=np.array([4, 1]))
    >>> a.shape
    (2, 2)
    >>> np.asarray(a)[0]
    array([8., 9.])
    """

    def __init__(self, source: Any, index: np.ndarray | None = None) -> None:
        if isinstance(source, TrialArray):
            index = source._compose(index)
            source = source.source
        self.source = source
        self.index = None if index is None else np.asarray(index, dtype=np.int64)

    def _compose(self, index: np.ndarray | None) -> np.ndarray | None:
        if index is None:
            return self.index
        if self.index is None:
            return np.asarray(index, dtype=np.int64)
        return self.index[index]

    @property
    def shape(self) -> tuple[int, ...]:
        n = self.source.shape[0] if self.index is None else len(self.index)
        return (n, *self.source.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    @property
    def ndim(self) -> int:
        return len(self.source.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def _positions(self, index: Any) -> np.ndarray | slice:
        if self.index is None:
            if isinstance(index, slice):
                return index
            return as_trial_index(index, len(self))
        return self.index[as_trial_index(index, len(self))]

    def __getitem__(self, index: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        if isinstance(index, (int, np.integer)):
            pos = int(as_trial_index(index, len(self))[0])
            pos = pos if self.index is None else int(self.index[pos])
            out = np.asarray(self.source[pos])
            return out[rest] if rest else out
        pos = self._positions(index)
        if isinstance(pos, np.ndarray) and len(pos) > 1 and np.all(np.diff(pos) == 1):
            pos = slice(int(pos[0]), int(pos[-1]) + 1)  # contiguous: a slice reads less
        out = np.asarray(self.source[pos])
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[slice(None)]
        return out if dtype is None else out.astype(dtype)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        inputs = tuple(np.asarray(x) if isinstance(x, TrialArray) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        kind = type(self.source).__name__
        return f"TrialArray(shape={self.shape}, dtype={self.dtype}, source={kind})"

    def chunks(self, size: int) -> Any:
        """Yield consecutive blocks of at most ``size`` trials as numpy arrays."""
        for start in range(0, len(self), size):
            yield self[start : start + size]
