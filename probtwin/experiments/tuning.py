"""In-silico tuning curves: posterior draws of every neuron's mean response to a stimulus family."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from probtwin.errors import DataError
from probtwin.experiments._pairs import core_history
from probtwin.experiments.stimuli import StimulusSet, is_grid

__all__ = ["predicted_responses", "tuning_curve"]


def _check_stimuli(stimuli: Any) -> StimulusSet:
    if not isinstance(stimuli, StimulusSet):
        expected = "a probtwin.experiments.StimulusSet (gratings, gabors, sparse_noise)"
        raise DataError("stimuli", expected, type(stimuli).__name__)
    return stimuli


def predicted_responses(
    twin: Any,
    stimuli: StimulusSet,
    behavior: np.ndarray | None = None,
    num_samples: int = 100,
    seed: int = 0,
    session: Any = None,
    frames: str | slice = "steady",
) -> xr.DataArray:
    """Posterior draws of the mean response to each stimulus.

    Parameters
    ----------
    twin : Twin
    stimuli : StimulusSet
    behavior : numpy.ndarray, shape (1, B) or (n, B), optional
        The state (raw units, as recorded); one row is broadcast over the stimuli. Default: the
        average state.
    num_samples : int
        Posterior draws (the same ``seed`` gives the same draws, so that two calls differ only in
        what they are asked).
    seed : int
    session : optional
    frames : "steady", "all" or slice
        Movies (a video twin): the response averaged over the frames after the twin's
        ``past_frames`` (``"steady"``: once every response sees the movie alone, past the onset
        transient, as the mean response to a drifting grating), over the frames of a ``slice``,
        or kept per frame (``"all"``: a ``frame`` dimension before ``neuron``).

    Returns
    -------
    xarray.DataArray, dims (sample, stimulus, [frame,] neuron)
        The stimulus parameters are coordinates along ``stimulus``, neuron ids along ``neuron``.
    """
    stimuli = _check_stimuli(stimuli)
    k = twin.session_index(session)
    prediction = twin.predict(stimuli.images, num_samples=num_samples, seed=seed, session=k, behavior=behavior)
    values, dims = prediction.samples, ("sample", "stimulus", "neuron")
    if values.ndim == 4:  # per frame
        if isinstance(frames, str) and frames not in ("steady", "all"):
            raise DataError("frames", "'steady', 'all' or a slice of frames", repr(frames))
        if frames == "all":
            dims = ("sample", "stimulus", "frame", "neuron")
        else:
            keep = slice(core_history(twin), None) if frames == "steady" else frames
            if not isinstance(keep, slice) or values[:, :, keep].shape[2] == 0:
                raise DataError("frames", f"a slice holding some of the {values.shape[2]} frames", repr(frames))
            values = values[:, :, keep].mean(2)
    coords = {"sample": np.arange(num_samples), "neuron": np.asarray(twin.specs[k].neuron_ids)}
    coords.update({name: ("stimulus", stimuli.parameters[name].to_numpy()) for name in stimuli.parameters.columns})
    return xr.DataArray(values, dims=dims, coords=coords, name="response")


def _average(da: xr.DataArray, parameters: pd.DataFrame, average: Any) -> xr.DataArray:
    """Average over the parameters in ``average``; the others become dimensions when they form
    a full grid (else coordinates along ``stimulus``)."""
    names = [average] if isinstance(average, str) else list(average or [])
    missing = [n for n in names if n not in parameters.columns]
    if missing:
        raise DataError("average", f"stimulus parameters among {list(parameters.columns)}", f"{missing}")
    keep = [c for c in parameters.columns if c not in names]
    if not keep:
        return da.mean("stimulus")
    values, table = da.values, parameters
    if names:
        groups = parameters.groupby(keep, sort=True).indices
        if len({len(rows) for rows in groups.values()}) != 1:
            raise DataError("stimuli", f"as many images for each {keep} (to average over {names})", "unequal counts")
        values = values[:, np.stack(list(groups.values()))].mean(axis=2)
        table = pd.DataFrame([key if isinstance(key, tuple) else (key,) for key in groups], columns=keep)
    coords = {"sample": da.sample.values, "neuron": da.neuron.values}
    out = xr.DataArray(values, dims=("sample", "stimulus", "neuron"), coords=coords, name=da.name)
    if is_grid(table):
        index = pd.MultiIndex.from_frame(table)
        return out.assign_coords(xr.Coordinates.from_pandas_multiindex(index, "stimulus")).unstack("stimulus")
    return out.assign_coords({name: ("stimulus", table[name].to_numpy()) for name in keep})


def tuning_curve(
    twin: Any,
    stimuli: StimulusSet,
    behavior: np.ndarray | None = None,
    num_samples: int = 100,
    seed: int = 0,
    session: Any = None,
    average: str | list[str] | None = "phase",
) -> xr.DataArray:
    """Posterior draws of each neuron's tuning curve over a stimulus family.

    Parameters
    ----------
    twin : Twin
    stimuli : StimulusSet
        E.g. :func:`~probtwin.experiments.gratings`.
    behavior : numpy.ndarray, shape (1, B), optional
        The behavioural state (default: the average state).
    num_samples : int
        Posterior draws, computed together in bounded chunks.
    seed : int
    session : optional
    average : str or list of str, optional
        Stimulus parameters to average the response over (default ``"phase"``: the response to
        a grating regardless of its phase, like the F0 of a drifting grating); None: none.

    Returns
    -------
    xarray.DataArray, dims (sample, *parameters, neuron)
        One dimension per remaining stimulus parameter when they form a full grid (else one
        ``stimulus`` dimension with the parameters as coordinates). ``.quantile([0.05, 0.95],
        "sample")`` gives 90% credible bands.

    Examples
    --------
    >>> stimuli = gratings(np.linspace(0, np.pi, 12, endpoint=False), twin=twin)  # doctest: +SKIP
    >>> curve = tuning_curve(twin, stimuli)                                          # doctest: +SKIP
    >>> curve.dims                                                                   # doctest: +SKIP
    ('sample', 'orientation', 'spatial_frequency', 'neuron')
    """
    stimuli = _check_stimuli(stimuli)
    da = predicted_responses(twin, stimuli, behavior, num_samples, seed, session)
    out = _average(da, stimuli.parameters, average)
    dims = ["sample", *[d for d in out.dims if d not in ("sample", "neuron")], "neuron"]
    return out.transpose(*dims)
