"""Metrics of predicted against observed responses, after the Sensorium 2022 benchmark.

Definitions follow Willeke et al. (2022), "The Sensorium competition on predicting large-scale
mouse primary visual cortex activity", and the neuralpredictors package:

- single-trial correlation: per neuron, the Pearson correlation over trials of prediction and
  response;
- correlation to average: per neuron, the correlation over distinct stimuli of the mean prediction
  and the mean response over the stimulus's repeats;
- FEV (fraction of explainable variance) of neuron i: ``(Var[y] - sigma_noise^2) / Var[y]`` with
  ``Var[y]`` the variance over all trials and ``sigma_noise^2`` the mean over stimuli of the
  variance over repeats (both with ``ddof=1``);
- FEVE (fraction of explainable variance explained):
  ``1 - (MSE - sigma_noise^2) / (Var[y] - sigma_noise^2)``, averaged over the neurons with
  FEV >= 0.15;
- oracle correlation: per neuron, the correlation of each trial's response with the mean of the
  other repeats of its stimulus (leave one out).

Arrays hold trials first and neurons last: (trials, neurons). Per-frame responses
(trials, frames, neurons) are flattened to (trials * frames, neurons) by the functions that
correlate over trials; frames whose responses are NaN for every neuron (the padding of trials of
unequal length, :mod:`probtwin.data.padding`) are left out, and so are, in the repeat-based
scores, frames that some repeat of a stimulus lacks.
"""

from __future__ import annotations

import numpy as np

from probtwin.errors import DataError

__all__ = [
    "correlation",
    "single_trial_correlation",
    "correlation_to_average",
    "fev",
    "feve",
    "oracle_correlation",
    "split_half_reliability",
    "log_likelihood_bits",
    "bits_per_spike",
    "r_squared",
    "roc_auc",
    "behavior_effect",
    "pit",
    "coverage",
    "interval_coverage",
]

FEV_THRESHOLD = 0.15
_LN2 = np.log(2.0)


def _pair(y_true, y_pred, field_true="responses", field_pred="predictions"):
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise DataError(field_pred, f"shape {y_true.shape} like {field_true}", f"shape {y_pred.shape}")
    if y_true.ndim == 3:
        y_true = y_true.reshape(-1, y_true.shape[-1])
        y_pred = y_pred.reshape(-1, y_pred.shape[-1])
        recorded = ~np.isnan(y_true).all(-1)  # padding frames of trials of unequal length: left out
        if not recorded.all():
            y_true, y_pred = y_true[recorded], y_pred[recorded]
    if y_true.ndim != 2:
        raise DataError(field_true, "shape (trials, neurons) or (trials, frames, neurons)", f"shape {y_true.shape}")
    return y_true, y_pred


def correlation(x: np.ndarray, y: np.ndarray, axis: int = 0, eps: float = 1e-12) -> np.ndarray:
    """Pearson correlation of ``x`` and ``y`` along ``axis``.

    A constant column has no correlation: it gives NaN rather than a made-up number.

    Examples
    --------
    >>> correlation(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])).round(4)
    0.9934
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    num = (xc * yc).sum(axis=axis)
    den = np.sqrt((xc**2).sum(axis=axis) * (yc**2).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > eps, num / np.where(den > eps, den, 1.0), np.nan)


def single_trial_correlation(responses: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Per-neuron correlation over trials, shape (neurons,).

    Parameters
    ----------
    responses, predictions : numpy.ndarray, shape (trials, neurons) or (trials, frames, neurons)
    """
    y, p = _pair(responses, predictions)
    return correlation(y, p, axis=0)


def _stimulus_means(x: np.ndarray, stimulus_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over repeats per stimulus (stimuli, ...), repeat counts and each trial's stimulus."""
    ids = np.asarray(stimulus_ids)
    if ids.shape != (x.shape[0],):
        raise DataError("stimulus_ids", f"shape ({x.shape[0]},)", f"shape {ids.shape}")
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(counts), *x.shape[1:]))
    np.add.at(sums, inverse, x)
    return sums / counts.reshape(-1, *([1] * (x.ndim - 1))), counts, inverse


def correlation_to_average(responses: np.ndarray, predictions: np.ndarray, stimulus_ids: np.ndarray) -> np.ndarray:
    """Per-neuron correlation of repeat-averaged responses and predictions, shape (neurons,).

    Parameters
    ----------
    responses, predictions : numpy.ndarray, shape (trials, neurons) or (trials, frames, neurons)
    stimulus_ids : numpy.ndarray, shape (trials,)
        Trials with equal ids are repeats of one stimulus.
    """
    y = np.asarray(responses, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    _pair(y, p)
    my, _, _ = _stimulus_means(y, stimulus_ids)
    mp, _, _ = _stimulus_means(p, stimulus_ids)
    my, mp = _pair(my, mp)
    return correlation(my, mp, axis=0)


def _noise_variance(y: np.ndarray, stimulus_ids: np.ndarray) -> np.ndarray:
    means, counts, inverse = _stimulus_means(y, stimulus_ids)
    if counts.max() < 2:
        raise DataError("stimulus_ids", "stimuli shown at least twice (repeats)", "no repeated stimulus")
    repeated = counts >= 2
    sq = np.zeros_like(means)
    np.add.at(sq, inverse, (y - means[inverse]) ** 2)
    var = sq[repeated] / (counts[repeated] - 1).reshape(-1, *([1] * (y.ndim - 1)))
    var = var.reshape(-1, *y.shape[1:])
    if y.ndim == 3:  # per frame: the frames every repeat has
        var = var.reshape(-1, y.shape[-1])
        var = var[~np.isnan(var).all(-1)]
    return var.mean(axis=0)


def fev(responses: np.ndarray, stimulus_ids: np.ndarray) -> np.ndarray:
    """Fraction of explainable variance of each neuron, shape (neurons,).

    Parameters
    ----------
    responses : numpy.ndarray, shape (trials, neurons) or (trials, frames, neurons)
    stimulus_ids : numpy.ndarray, shape (trials,)
    """
    y = np.asarray(responses, dtype=np.float64)
    noise = _noise_variance(y, stimulus_ids)
    total = _pair(y, y)[0].var(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total - noise) / total


def feve(
    responses: np.ndarray,
    predictions: np.ndarray,
    stimulus_ids: np.ndarray,
    threshold: float = FEV_THRESHOLD,
    per_neuron: bool = False,
) -> float | np.ndarray:
    """Fraction of explainable variance explained.

    Parameters
    ----------
    responses, predictions : numpy.ndarray, shape (trials, neurons) or (trials, frames, neurons)
    stimulus_ids : numpy.ndarray, shape (trials,)
    threshold : float
        Neurons with FEV below it are left out of the average (Sensorium: 0.15).
    per_neuron : bool
        Return every neuron's FEVE, shape (neurons,), instead of the average.

    Returns
    -------
    float or numpy.ndarray
        NaN when no neuron passes the threshold.
    """
    y = np.asarray(responses, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    rows_y, rows_p = _pair(y, p)
    noise = _noise_variance(y, stimulus_ids)
    total = rows_y.var(axis=0, ddof=1)
    mse = ((rows_y - rows_p) ** 2).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = 1.0 - (mse - noise) / (total - noise)
        ok = (total - noise) / total >= threshold
    if per_neuron:
        return per
    return float(per[ok].mean()) if ok.any() else float("nan")


def oracle_correlation(responses: np.ndarray, stimulus_ids: np.ndarray) -> np.ndarray:
    """Leave-one-out oracle correlation per neuron, shape (neurons,).

    Each trial's response is correlated with the mean of the other repeats of its stimulus;
    stimuli shown once are left out.
    """
    y = np.asarray(responses, dtype=np.float64)
    means, counts, inverse = _stimulus_means(y, stimulus_ids)
    keep = counts[inverse] >= 2
    if not keep.any():
        raise DataError("stimulus_ids", "stimuli shown at least twice (repeats)", "no repeated stimulus")
    c = counts[inverse][keep].reshape(-1, *([1] * (y.ndim - 1)))
    loo = (means[inverse][keep] * c - y[keep]) / (c - 1)
    return correlation(*_pair(y[keep], loo), axis=0)


def split_half_reliability(
    responses: np.ndarray, stimulus_ids: np.ndarray, n_splits: int = 10, seed: int = 0
) -> np.ndarray:
    """Noise ceiling: split-half correlation of per-stimulus means, Spearman-Brown corrected.

    The repeats of each stimulus are split at random into two halves (``floor(r / 2)`` and the
    rest); per neuron, the means of the two halves are correlated over stimuli, and the
    correlation ``c`` corrected to the full number of repeats as ``2 c / (1 + c)``. The result is
    averaged over ``n_splits`` random splits. Stimuli shown once are left out.

    Parameters
    ----------
    responses : numpy.ndarray, shape (trials, neurons)
    stimulus_ids : numpy.ndarray, shape (trials,)
    n_splits : int
    seed : int

    Returns
    -------
    numpy.ndarray, shape (neurons,)
    """
    y = np.asarray(responses, dtype=np.float64)
    _, counts, inverse = _stimulus_means(y, stimulus_ids)
    keep = counts[inverse] >= 2
    if not keep.any():
        raise DataError("stimulus_ids", "stimuli shown at least twice (repeats)", "no repeated stimulus")
    y, group = y[keep], np.unique(inverse[keep], return_inverse=True)[1].reshape(-1)
    n_groups = group.max() + 1
    counts = np.bincount(group)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rng = np.random.default_rng(seed)
    out = np.zeros(y.shape[1:])
    for _ in range(n_splits):  # a handful of random splits, each vectorised over trials
        order = np.lexsort((rng.uniform(size=len(group)), group))
        rank = np.empty(len(group), dtype=np.int64)
        rank[order] = np.arange(len(group)) - starts[group[order]]
        half = (rank >= counts[group] // 2).astype(np.int64)
        sums = np.zeros((n_groups, 2, *y.shape[1:]))
        np.add.at(sums, (group, half), y)
        sizes = np.zeros((n_groups, 2))
        np.add.at(sizes, (group, half), 1)
        means = sums / sizes.reshape(n_groups, 2, *([1] * (y.ndim - 1)))
        c = correlation(means[:, 0], means[:, 1], axis=0)
        out += 2 * c / (1 + c)
    return out / n_splits


def log_likelihood_bits(log_prob: np.ndarray, per_neuron: bool = False) -> float | np.ndarray:
    """Mean log-likelihood in bits per neuron per trial.

    Parameters
    ----------
    log_prob : numpy.ndarray, shape (trials, neurons) or (trials, frames, neurons)
        Log densities (or probabilities) in nats.
    per_neuron : bool
        Return the mean per neuron, shape (neurons,).
    """
    lp = np.asarray(log_prob, dtype=np.float64)
    lp = lp.reshape(-1, lp.shape[-1])
    out = lp.mean(axis=0) / _LN2
    return out if per_neuron else float(out.mean())


def bits_per_spike(log_prob: np.ndarray, log_prob_baseline: np.ndarray, spikes: np.ndarray) -> float:
    """Log-likelihood gain over a baseline, in bits per spike (Pei et al. 2021, NLB).

    Parameters
    ----------
    log_prob, log_prob_baseline : numpy.ndarray, same shape as ``spikes``
        Log probabilities in nats under the model and the baseline (e.g. each neuron's constant
        mean rate).
    spikes : numpy.ndarray
        Observed counts.
    """
    total = float(np.sum(spikes))
    if total <= 0:
        raise DataError("spikes", "at least one spike", "none")
    return float((np.sum(log_prob) - np.sum(log_prob_baseline)) / (total * _LN2))


def pit(samples: np.ndarray, observed: np.ndarray, seed: int = 0) -> np.ndarray:
    """Randomized probability integral transform of observations under predictive samples.

    ``u = P(Y < y) + V * P(Y = y)``, ``V ~ Uniform(0, 1)``, with the probabilities taken over the
    predictive samples. For continuous predictions the tie term vanishes and ``u`` is the plain
    PIT; for counts it randomises within the atom, so that under a calibrated model ``u`` is
    uniform whatever the rates (Czado, Gneiting & Held 2009).

    Parameters
    ----------
    samples : numpy.ndarray, shape (samples, ...)
        Posterior predictive draws.
    observed : numpy.ndarray, shape (...)
        The observations.
    seed : int
        Seed of ``V``.

    Returns
    -------
    numpy.ndarray, shape (...)
    """
    s = np.asarray(samples)
    y = np.asarray(observed)
    if s.shape[1:] != y.shape:
        raise DataError("samples", f"shape (samples, *{y.shape})", f"shape {s.shape}")
    below = (s < y).mean(axis=0)
    ties = (s == y).mean(axis=0)
    v = np.random.default_rng(seed).uniform(size=y.shape)
    return below + v * ties


def coverage(observed: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of observations inside ``[lower, upper]``."""
    y = np.asarray(observed)
    return float(np.mean((y >= lower) & (y <= upper)))


def interval_coverage(samples: np.ndarray, observed: np.ndarray, level: float = 0.9, seed: int = 0) -> float:
    """Fraction of observations inside the central ``level`` predictive interval, by randomized PIT.

    A calibrated model scores ``level``, for continuous and for count data alike.

    Parameters
    ----------
    samples : numpy.ndarray, shape (samples, ...)
    observed : numpy.ndarray, shape (...)
    level : float in (0, 1)
    seed : int
    """
    if not 0 < level < 1:
        raise DataError("level", "a number in (0, 1)", str(level))
    u = pit(samples, observed, seed=seed)
    u = u[~np.isnan(np.asarray(observed))]  # NaN: padding frames of trials of unequal length
    lo = (1 - level) / 2
    return float(np.mean((u >= lo) & (u <= 1 - lo)))


def r_squared(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each output, ``1 - SSE / SST``, over all trials and frames.

    Parameters
    ----------
    observed, predicted : numpy.ndarray, shape (trials, [frames,] dims)
        E.g. hand velocity and its decoded value.

    Returns
    -------
    numpy.ndarray, shape (dims,)
        The figure decoding papers report is the mean over dims (x and y velocity).
    """
    y, p = _pair(observed, predicted, "observed", "predicted")
    sst = ((y - y.mean(0)) ** 2).sum(0)
    if np.any(sst <= 0):
        raise DataError("observed", "outputs that vary", f"constant outputs {np.flatnonzero(sst <= 0).tolist()}")
    return 1.0 - ((y - p) ** 2).sum(0) / sst


BEHAVIOR_EFFECTS = ("rms", "speed")


def behavior_effect(intact: np.ndarray, altered: np.ndarray, statistic: str = "rms") -> np.ndarray:
    """The effect of an intervention on behaviour, one number per leading index.

    Parameters
    ----------
    intact, altered : array, shape (..., trials, frames, dims)
        Behaviour (e.g. hand velocity) without and with the intervention, on the same trials;
        leading dimensions broadcast (one intact run against many interventions).
    statistic : {"rms", "speed"}
        ``"rms"``: root-mean-square change, ``sqrt(mean_{t, f, d} (altered - intact)^2)``, in the
        behaviour's units (0 when nothing changes); ``"speed"``: change of the mean speed,
        ``mean |altered| - mean |intact|`` (norm over dims; negative when movements slow down).

    Returns
    -------
    array, shape (...)
    """
    if statistic not in BEHAVIOR_EFFECTS:
        raise DataError("statistic", f"one of {BEHAVIOR_EFFECTS}", repr(statistic))
    intact = np.asarray(intact, dtype=np.float64)
    altered = np.asarray(altered, dtype=np.float64)
    try:
        np.broadcast_shapes(intact.shape, altered.shape)
        ok = intact.ndim >= 3 and intact.shape[-3:] == altered.shape[-3:]
    except ValueError:
        ok = False
    if not ok:
        raise DataError(
            "altered", f"shape (..., *{intact.shape[-3:]}) like intact (trials, frames, dims)", f"{altered.shape}"
        )
    if statistic == "rms":
        return np.sqrt(((altered - intact) ** 2).mean(axis=(-3, -2, -1)))
    diff = np.linalg.norm(altered, axis=-1) - np.linalg.norm(intact, axis=-1)
    return diff.mean(axis=(-2, -1))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` separating ``labels`` (e.g. true edges from non-edges).

    The Mann-Whitney statistic: the probability that a random positive scores above a random
    negative, ties counting one half (average ranks).

    Parameters
    ----------
    labels : bool array, shape (n,)
    scores : array, shape (n,)
    """
    from scipy.stats import rankdata

    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise DataError("scores", f"shape {y.shape} like labels", f"shape {s.shape}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError("labels", "both positives and negatives", f"{n_pos} positives, {n_neg} negatives")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
