"""In-silico lesions and stimulation of a graph twin's units, and their effect on behaviour.

A lesion holds units at zero (their resting state) for the whole trial, so that they send no
messages and add nothing to the behaviour readout, or cuts edges (their weights set to zero). A
stimulation adds a pattern to units' states at every frame. Each is run on the trials of a
recording, from each trial's inferred initial state, with the posterior draws of the twin and
common process noise for the intact and the altered circuit
(:meth:`probtwin.MotorGraphTwin.intervention_effects`); the effect is a
:func:`probtwin.metrics.behavior_effect` of the behaviour. The result is a DataArray
(sample, neuron) (or (sample, edge)) that :func:`probtwin.hypothesis.test` reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.experiments.receptive_fields import _neurons

__all__ = ["lesion", "stimulate"]


def _check_twin(twin: Any) -> None:
    if not hasattr(twin, "intervention_effects"):
        raise DataError("twin", "a twin with dynamics (MotorGraphTwin)", type(twin).__name__)


def _trials(recording: Any, tier: str | None) -> Recording:
    if not isinstance(recording, Recording):
        raise DataError("recording", "a probtwin.Recording (the trials to run)", type(recording).__name__)
    return recording.split(tier) if tier is not None else recording


def _rows(n: int, jointly: bool) -> np.ndarray:
    """The intervention each of ``n`` targets belongs to: its own, or the one joint intervention."""
    return np.zeros(n, int) if jointly else np.arange(n)


def _result(effects: np.ndarray, dim: str, coords: dict, statistic: str, what: str) -> xr.DataArray:
    da = xr.DataArray(effects, dims=("sample", dim), coords=coords, name="effect")
    da.attrs.update(statistic=statistic, intervention=what)
    return da


def _edge_positions(twin: Any, edges: Any) -> np.ndarray:
    """Positions in the twin's edge list of (source, target) pairs given as (2, L) or (L, 2)."""
    e = np.asarray(edges)
    if e.ndim == 2 and e.shape[1] == 2 and e.shape[0] != 2:
        e = e.T
    if e.ndim != 2 or e.shape[0] != 2 or e.dtype.kind not in "iu":
        raise DataError("edges", "unit index pairs of shape (2, L) or (L, 2)", f"{e.dtype} array of shape {e.shape}")
    graph = twin.edge_index.cpu().numpy()
    n = twin.specs[0].n_neurons
    lookup = {int(k): j for j, k in enumerate(graph[0] * n + graph[1])}
    keys = e[0].astype(np.int64) * n + e[1]
    missing = [(int(a), int(b)) for a, b, k in zip(e[0], e[1], keys, strict=True) if int(k) not in lookup]
    if missing:
        raise DataError("edges", "edges of the twin's graph (twin.edges() lists them)", f"{missing[:5]}")
    return np.array([lookup[int(k)] for k in keys])


def lesion(
    twin: Any,
    nodes: Any = None,
    edges: Any = None,
    recording: Recording | None = None,
    tier: str | None = None,
    jointly: bool = False,
    num_samples: int = 100,
    seed: int = 0,
    statistic: str = "rms",
) -> xr.DataArray:
    """Posterior draws of the effect on behaviour of silencing units or cutting edges.

    Parameters
    ----------
    twin : MotorGraphTwin
    nodes : list of int, optional
        Units (positions) to silence, each on its own (one effect per unit) or, with
        ``jointly``, all together (one effect).
    edges : array (2, L) or (L, 2) of int, optional
        ``(source, target)`` unit positions of edges to cut, each on its own or jointly.
    recording : Recording
        The trials to run (their task inputs; the initial states are inferred from their spikes).
    tier : str, optional
        Which trials of ``recording`` (default: all).
    num_samples, seed : int
    statistic : {"rms", "speed"}
        See :func:`probtwin.metrics.behavior_effect`.

    Returns
    -------
    xarray.DataArray
        ``(sample, neuron)`` with unit ids as coordinates (edges: ``(sample, edge)`` with
        ``source`` and ``target`` ids; jointly: one column labelled ``"joint"``), in the
        behaviour's units.

    Examples
    --------
    >>> effect = pt.experiments.lesion(twin, nodes=[3, 7], recording=rec, tier="test")  # doctest: +SKIP
    >>> pt.hypothesis.test(effect, delta=0.5)  # doctest: +SKIP
    """
    _check_twin(twin)
    if (nodes is None) == (edges is None):
        raise DataError("nodes, edges", "exactly one of nodes and edges", "both" if nodes is not None else "neither")
    part = _trials(recording, tier)
    ids = np.asarray(twin.specs[0].neuron_ids)
    n = len(ids)
    if nodes is not None:
        index = _neurons(twin, 0, nodes, "nodes")
        silenced = np.zeros((1 if jointly else len(index), n), dtype=bool)
        silenced[_rows(len(index), jointly), index] = True
        effects = twin.intervention_effects(
            part, silenced=silenced, num_samples=num_samples, seed=seed, statistic=statistic
        )
        coords = {"neuron": ["joint"] if jointly else ids[index]}
        return _result(effects, "neuron", coords, statistic, "lesion of units")
    pos = _edge_positions(twin, edges)
    mask = np.zeros((1 if jointly else len(pos), twin.edge_index.shape[1]), dtype=bool)
    mask[_rows(len(pos), jointly), pos] = True
    effects = twin.intervention_effects(part, edge_mask=mask, num_samples=num_samples, seed=seed, statistic=statistic)
    graph = twin.edge_index.cpu().numpy()
    if jointly:
        coords = {"edge": ["joint"]}
    else:
        coords = {"edge": pos, "source": ("edge", ids[graph[0, pos]]), "target": ("edge", ids[graph[1, pos]])}
    return _result(effects, "edge", coords, statistic, "lesion of edges")


def stimulate(
    twin: Any,
    nodes: Any,
    pattern: Any,
    recording: Recording,
    tier: str | None = None,
    jointly: bool = False,
    num_samples: int = 100,
    seed: int = 0,
    statistic: str = "rms",
) -> xr.DataArray:
    """Posterior draws of the effect on behaviour of driving units with a pattern.

    Parameters
    ----------
    twin : MotorGraphTwin
    nodes : list of int
        Units (positions) to drive, each on its own or, with ``jointly``, together.
    pattern : array (frames,) or (frames, d)
        Added to each driven unit's latent state at every frame (the same on every latent
        dimension when 1-d), in the units of the twin's states.
    recording, tier, jointly, num_samples, seed, statistic
        As in :func:`lesion`.

    Returns
    -------
    xarray.DataArray
        ``(sample, neuron)``.
    """
    _check_twin(twin)
    part = _trials(recording, tier)
    index = _neurons(twin, 0, nodes, "nodes")
    d = twin.latent_dim
    p = np.asarray(pattern, dtype=np.float32)
    p = np.repeat(p[:, None], d, axis=1) if p.ndim == 1 else p
    if p.shape != (part.n_frames, d) or not np.all(np.isfinite(p)):
        raise DataError("pattern", f"finite values of shape ({part.n_frames},) or ({part.n_frames}, {d})", f"{p.shape}")
    ids = np.asarray(twin.specs[0].neuron_ids)
    n_int = 1 if jointly else len(index)
    drive = np.zeros((n_int, part.n_frames, len(ids), d), np.float32)
    drive[_rows(len(index), jointly), :, index] = p
    effects = twin.intervention_effects(part, drive=drive, num_samples=num_samples, seed=seed, statistic=statistic)
    coords = {"neuron": ["joint"] if jointly else ids[index]}
    return _result(effects, "neuron", coords, statistic, "stimulation of units")
