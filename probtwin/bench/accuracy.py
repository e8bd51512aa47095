"""Accuracy on the real image data sets: the twin with default settings beside ridge regression on
pixels, fitted in the same run."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from probtwin import datasets, metrics
from probtwin.bench.anchor import fit_anchor
from probtwin.data.recording import Recording
from probtwin.datasets.visual import resize_images
from probtwin.errors import DataError
from probtwin.twins.image import ImageTwin

__all__ = ["DATASETS", "compare_with_anchor", "ridge_baseline", "run_accuracy"]

#: Loader and likelihood of each data set (dF/F data can be negative: a Gaussian likelihood).
DATASETS: dict[str, tuple[Callable[[], Recording], str]] = {
    "cowley_v4_201025": (lambda: datasets.cowley_v4("201025", image_size=56), "poisson"),
    "cowley_v4_210224": (lambda: datasets.cowley_v4("210224", image_size=56), "poisson"),
    "cowley_v4_210325": (lambda: datasets.cowley_v4("210325", image_size=56), "poisson"),
    "tang_v1": (lambda: datasets.tang_v1(), "normal"),
    "allen_v1": (lambda: datasets.allen_v1(), "normal"),
}


def _pixels(rec: Recording, size: int) -> np.ndarray:
    x = np.asarray(rec.stimuli, dtype=np.float32).mean(axis=1, keepdims=True)  # grey
    return resize_images(x, size).reshape(rec.n_trials, -1)


def ridge_baseline(
    rec: Recording, size: int = 14, alphas: tuple[float, ...] = tuple(10.0 ** np.arange(-1, 6))
) -> float:
    """Test single-trial correlation of ridge regression on ``size`` x ``size`` grey pixels.

    The penalty is chosen on the validation tier (or the train tier where there is none).
    """
    x = _pixels(rec, size)
    y = np.asarray(rec.responses, dtype=np.float64)
    tr, te = rec.tiers == "train", rec.tiers == "test"
    va = rec.tiers == "validation" if np.any(rec.tiers == "validation") else tr

    def score(observed: np.ndarray, predicted: np.ndarray) -> float:
        return float(np.nanmean(metrics.single_trial_correlation(observed, predicted)))

    _, predict = ridge_fit(x, y, tr, va, score, alphas)
    return score(y[te], predict(x[te]))


def ridge_fit(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    validation: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], float],
    alphas: tuple[float, ...],
) -> tuple[float, Callable[[np.ndarray], np.ndarray]]:
    """Ridge regression of ``y`` (n, outputs) on ``x`` (n, features) standardised on the train rows,
    its penalty the one among ``alphas`` whose predictions of the validation rows score highest.

    Returns
    -------
    (alpha, predict)
        ``predict(x)`` -> (rows, outputs) under the chosen penalty.
    """
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
    ym = y[train].mean(0)
    u, s, vt = np.linalg.svd((x[train] - mu) / sd, full_matrices=False)
    uty = u.T @ (y[train] - ym)

    def predict_with(alpha: float, z: np.ndarray) -> np.ndarray:
        return (z - mu) / sd @ (vt.T @ ((s / (s**2 + alpha))[:, None] * uty)) + ym

    best = max(alphas, key=lambda a: score(y[validation], predict_with(a, x[validation])))
    return best, lambda z: predict_with(best, z)


def print_figures(results: dict) -> None:
    """One line per figure: its name, padded, and its value (floats to 4 decimals)."""
    width = max(map(len, results))
    for key, value in results.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {text}", flush=True)


def compare_with_anchor(
    name: str, seed: int = 0, max_epochs: int = 200, time_limit: float | None = 900.0, progress: bool = False
) -> dict:
    """The twin with its defaults, the Sensorium 2022 anchor and ridge on pixels on one data set
    of :data:`DATASETS`, the twin and the anchor with the same epoch and time budget.

    Returns
    -------
    dict
        ``data``, ``likelihood``, ``epochs``, ``fit_seconds`` (the twin's), its test scores
        (:meth:`ImageTwin.evaluate`), ``anchor_correlation``, ``anchor_epochs``,
        ``anchor_seconds``, ``ridge_correlation``.
    """
    if name not in DATASETS:
        raise DataError("name", f"one of {tuple(DATASETS)}", repr(name))
    load, likelihood = DATASETS[name]
    rec = load()
    start = time.perf_counter()
    twin = ImageTwin(rec, likelihood=likelihood)
    history = twin.fit(max_epochs=max_epochs, seed=seed, progress=progress, time_limit=time_limit)
    seconds = time.perf_counter() - start
    scores = twin.evaluate(rec, "test", seed=seed)
    anchor = fit_anchor(rec, max_epochs=max_epochs, time_limit=time_limit, seed=seed)  # the same budget
    return {
        "data": name,
        "likelihood": likelihood,
        "epochs": len(history),
        "fit_seconds": seconds,
        "ridge_correlation": ridge_baseline(rec),
        "anchor_correlation": anchor["single_trial_correlation"],
        "anchor_epochs": anchor["epochs"],
        "anchor_seconds": anchor["fit_seconds"],
        **scores,
    }


def run_accuracy(
    names: list[str] | None = None,
    seed: int = 0,
    max_epochs: int = 200,
    joint: bool = True,
    progress: bool = False,
    log: Callable[[str], None] = print,
    time_limit: float | None = 900.0,
) -> list[dict]:
    """Fit the twin with default settings on each data set and print its test scores beside the
    Sensorium 2022 anchor (:mod:`probtwin.bench.anchor`, trained in the same run with the same
    epoch and time budget) and ridge on pixels.

    Each fit stops early as usual, and starts no epoch after ``time_limit`` seconds (15 minutes:
    the budget of the V4 target on two CPU cores).
    """
    rows = []
    for name in names or list(DATASETS):
        try:
            row = compare_with_anchor(name, seed, max_epochs, time_limit, progress)
        except FileNotFoundError as err:
            log(f"{name}: skipped ({err})")
            continue
        rows.append(row)
        log(
            f"{name:18s} twin {row['single_trial_correlation']:.3f}  "
            f"Sensorium 2022 anchor {row['anchor_correlation']:.3f}  ridge {row['ridge_correlation']:.3f}  "
            f"ll {row['log_likelihood_bits']:.3f} bits  coverage_90 {row['coverage_90']:.3f}  "
            f"({row['epochs']} epochs, {row['fit_seconds'] / 60:.1f} min)"
        )
    if joint and {"cowley_v4_201025", "cowley_v4_210224"} <= {r["data"] for r in rows}:
        recs = [DATASETS[n][0]() for n in ("cowley_v4_201025", "cowley_v4_210224")]
        start = time.perf_counter()
        twin = ImageTwin(recs)
        history = twin.fit(max_epochs=max_epochs, seed=seed, progress=progress, time_limit=time_limit)
        seconds = time.perf_counter() - start
        for rec in recs:
            scores = twin.evaluate(rec, "test", seed=seed)
            separate = next(r for r in rows if r["data"] == rec.name)
            rows.append({"data": f"joint:{rec.name}", "epochs": len(history), "fit_seconds": seconds, **scores})
            log(
                f"joint {rec.name:18s} twin {scores['single_trial_correlation']:.3f}  "
                f"(separate {separate['single_trial_correlation']:.3f}; one core, {seconds / 60:.1f} min)"
            )
    return rows
