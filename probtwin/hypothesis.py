"""Hypothesis tests on posterior samples of an effect per neuron, with false discoveries controlled.

For each neuron the posterior draws of an effect ``e`` (e.g. from
:func:`probtwin.experiments.compare_states`) give

- the posterior mean and central credible interval;
- ``P(e > delta)`` and ``P(|e| > delta)``;
- the local false sign rate ``lfsr = min(P(e >= 0), P(e <= 0))`` (Stephens 2017): the
  probability of being wrong about the sign;
- a log Bayes factor of ``H1`` against ``H0`` under prior odds 1 (as the "change" mode of
  scvi-tools' differential expression): ``log P(H1) / P(H0)``, with ``H1: |e| > delta`` when a
  ``delta`` is given, else ``H1: e > 0`` against ``e < 0``;
- ``discovery``: the neurons declared to have an effect. Each neuron's posterior probability of
  *not* having one (``1 - P(|e| > delta)``, or its ``lfsr`` without ``delta``) is the chance
  that declaring it is a false discovery; the neurons are declared in increasing order of it,
  as many as keep the average, the *posterior expected false discovery rate*, at most
  ``alpha`` (Muller et al. 2004; Boyeau et al. 2019). When the posterior is right this is the
  expected fraction of false discoveries among them.

Probabilities from ``S`` draws are estimated as ``(count + 1/2) / (S + 1)``, so none is exactly
0 or 1 and every log Bayes factor is finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from probtwin.errors import DataError
from probtwin.experiments.states import compare_states as _experiment

__all__ = ["compare_states", "expected_fdr_discoveries", "test"]


def _samples(effect_samples: Any, neuron_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(effect_samples, xr.DataArray):
        if effect_samples.ndim != 2 or "sample" not in effect_samples.dims:
            raise DataError(
                "effect_samples",
                "a DataArray with dims (sample, neuron) (or (sample, edge))",
                f"dims {effect_samples.dims}",
            )
        other = next(d for d in effect_samples.dims if d != "sample")
        da = effect_samples.transpose("sample", other)
        ids = da[other].values if other in da.coords else np.arange(da.sizes[other])
        values = np.asarray(da.values, dtype=np.float64)
    else:
        values = np.asarray(effect_samples, dtype=np.float64)
        if values.ndim != 2:
            raise DataError("effect_samples", "an array (samples, neurons)", f"shape {values.shape}")
        ids = np.arange(values.shape[1])
    if neuron_ids is not None:
        ids = np.asarray(neuron_ids)
        if ids.shape != (values.shape[1],):
            raise DataError("neuron_ids", f"{values.shape[1]} ids", f"shape {ids.shape}")
    if values.shape[0] < 2:
        raise DataError("effect_samples", "at least 2 posterior samples", f"{values.shape[0]}")
    if not np.all(np.isfinite(values)):
        bad = np.flatnonzero(~np.all(np.isfinite(values), axis=0))
        raise DataError(
            "effect_samples", "finite values", f"NaN or infinite values for neurons {ids[bad][:10].tolist()}"
        )
    return values, ids


def expected_fdr_discoveries(error_probability: np.ndarray, alpha: float) -> np.ndarray:
    """The largest set of units, taken in increasing order of their posterior probability of
    being a false discovery, whose average of it (the posterior expected FDR) is at most alpha.

    Parameters
    ----------
    error_probability : numpy.ndarray, shape (units,)
    alpha : float

    Returns
    -------
    numpy.ndarray of bool, shape (units,)

    Examples
    --------
    >>> expected_fdr_discoveries(np.array([0.01, 0.5, 0.02, 0.09]), 0.05).tolist()
    [True, False, True, True]
    """
    order = np.argsort(error_probability, kind="stable")
    running = np.cumsum(error_probability[order]) / np.arange(1, len(order) + 1)
    passing = np.flatnonzero(running <= alpha)
    out = np.zeros(len(order), dtype=bool)
    if len(passing):
        out[order[: passing[-1] + 1]] = True
    return out


def test(
    effect_samples: Any,
    delta: float | None = None,
    alpha: float = 0.05,
    level: float = 0.9,
    neuron_ids: Any = None,
) -> pd.DataFrame:
    """Per-neuron posterior summaries of an effect and discoveries at a posterior expected FDR.

    Parameters
    ----------
    effect_samples : xarray.DataArray (sample, neuron) or numpy.ndarray (samples, neurons)
        Posterior draws of the effect (any second dimension, e.g. ``edge`` of a lesion of
        edges, is tested the same way, its coordinate the table's index).
    delta : float, optional
        Smallest effect that matters (in the effect's units). Given: a neuron is a discovery when
        ``|e| > delta`` is probable. None: when its sign is certain (``delta`` 0 in the
        probability columns).
    alpha : float
        Target posterior expected false discovery rate of the discoveries.
    level : float
        Credible level of ``lower`` and ``upper``.
    neuron_ids : array_like, optional
        Index of the table (default: the DataArray's neuron coordinate, else 0..N-1).

    Returns
    -------
    pandas.DataFrame indexed by neuron
        ``mean``, ``lower``, ``upper``, ``p_greater`` = P(e > delta), ``p_outside`` =
        P(|e| > delta), ``lfsr``, ``log_bayes_factor``, ``error_probability`` (what the FDR
        control ranks by), ``discovery``; ``attrs`` hold ``delta``, ``alpha`` and the
        ``expected_fdr`` of the discoveries.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> samples = rng.normal([0.0, 3.0], 1.0, size=(1000, 2))
    >>> test(samples)["discovery"].tolist()
    [False, True]
    """
    values, ids = _samples(effect_samples, neuron_ids)
    if not 0 < alpha < 1:
        raise DataError("alpha", "a rate in (0, 1)", repr(alpha))
    if not 0 < level < 1:
        raise DataError("level", "a probability in (0, 1)", repr(level))
    if delta is not None and (not np.isfinite(delta) or delta < 0):
        raise DataError("delta", "a non-negative effect size or None", repr(delta))
    threshold = 0.0 if delta is None else float(delta)
    s = values.shape[0]

    def prob(mask: np.ndarray) -> np.ndarray:
        return (mask.sum(axis=0) + 0.5) / (s + 1)

    p_greater = prob(values > threshold)
    p_outside = prob(np.abs(values) > threshold)
    lfsr = np.minimum(prob(values >= 0), prob(values <= 0))
    if delta is None:
        p_h1, error = prob(values > 0), lfsr
        p_h0 = prob(values < 0)
    else:
        p_h1, error = p_outside, 1.0 - p_outside
        p_h0 = error
    lo = (1 - level) / 2
    table = pd.DataFrame(
        {
            "mean": values.mean(axis=0),
            "lower": np.quantile(values, lo, axis=0),
            "upper": np.quantile(values, 1 - lo, axis=0),
            "p_greater": p_greater,
            "p_outside": p_outside,
            "lfsr": lfsr,
            "log_bayes_factor": np.log(p_h1) - np.log(p_h0),
            "error_probability": error,
            "discovery": expected_fdr_discoveries(error, alpha),
        },
        index=pd.Index(ids, name="neuron"),
    )
    found = table["discovery"].to_numpy()
    table.attrs.update(
        delta=delta,
        alpha=alpha,
        level=level,
        expected_fdr=float(error[found].mean()) if found.any() else 0.0,
        num_samples=s,
    )
    return table


def compare_states(
    twin: Any,
    stimuli: Any,
    behavior_a: np.ndarray,
    behavior_b: np.ndarray,
    statistic: str = "response",
    delta: float | None = None,
    alpha: float = 0.05,
    num_samples: int = 200,
    seed: int = 0,
    session: Any = None,
) -> pd.DataFrame:
    """Which neurons change with state: :func:`probtwin.experiments.compare_states` then :func:`test`.

    Returns
    -------
    pandas.DataFrame
        As :func:`test`; ``attrs`` also hold the statistic, its units and the two states.
    """
    effect = _experiment(twin, stimuli, behavior_a, behavior_b, statistic, num_samples, seed, session)
    table = test(effect, delta=delta, alpha=alpha)
    table.attrs.update(effect.attrs)
    return table
