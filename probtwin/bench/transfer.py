"""Robustness transfer: do digit classifiers regularised with a twin's representation withstand
noise, corruptions and adversarial perturbations better than controls?

Every classifier sees the same training digits (``mnist_digits``: 3,000 for training, 1,000 to
validate, 1,000 to test, the same split for every seed), trains for the same epochs with the same
optimiser, and differs only in its regulariser:

- ``baseline``: none;
- ``neural``: toward the similarity of a twin's posterior mean responses to the similarity images
  (a twin fitted with its defaults on a real recording; the images are the recording's held-out
  ones);
- ``neural_draws``: the same, toward one of ``DRAWS`` posterior draws' matrices each step (the
  twin's uncertainty in the target);
- ``pixel``: toward the similarity of the same images' pixels (what images alone carry);
- ``random``: toward the twin's matrix with the images relabelled at random;
- ``multitask``: hidden features also predict the recorded responses to those images.

Each regulariser's weight is chosen per seed on the validation digits from ``WEIGHTS`` by the
mean accuracy over ``VALIDATION_CORRUPTIONS`` at severity 3 (five of the test's corruption types,
on other digits and with other noise draws), the same rule for every side. Test scores: clean
accuracy, the mean over the 15 corruptions at 5 severities, Gaussian noise, FGSM and PGD at each
epsilon; mean and sd over seeds, and the paired differences neural - pixel and neural_draws -
neural with their 95% t-intervals over seeds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from probtwin.errors import DataError
from probtwin.transfer import CORRUPTIONS, accuracy, corrupt, fgsm, fit_classifier, gaussian_noise, pgd

__all__ = [
    "DRAWS",
    "PAIRS",
    "VARIANTS",
    "WEIGHTS",
    "corrupted_sets",
    "run_transfer_comparison",
    "score_classifier",
    "summarise",
]

VARIANTS = ("baseline", "neural", "neural_draws", "pixel", "random", "multitask")
"""The classifiers compared."""

WEIGHTS = (0.3, 1.0, 3.0)
"""Regulariser weights tried on the validation digits."""

DRAWS = 20
"""Posterior draws of the twin's similarity matrix for ``neural_draws``."""

PAIRS = (("neural", "pixel"), ("neural_draws", "neural"))
"""The paired comparisons reported (first minus second, per seed)."""

VALIDATION_CORRUPTIONS = ("gaussian_noise", "motion_blur", "fog", "contrast", "pixelate")


def corrupted_sets(
    images: np.ndarray, corruptions: Sequence[str] = CORRUPTIONS, severities: Sequence[int] = (1, 2, 3, 4, 5)
) -> dict[tuple[str, int], np.ndarray]:
    """Each corruption at each severity of the images, computed once for every classifier."""
    return {(c, s): corrupt(images, c, s, seed=s) for c in corruptions for s in severities}


def score_classifier(
    model: Any,
    images: np.ndarray,
    labels: np.ndarray,
    corrupted: dict[tuple[str, int], np.ndarray],
    epsilons: Sequence[float],
    noise_stds: Sequence[float],
    pgd_steps: int = 10,
) -> dict[str, float]:
    """Test accuracies of one classifier: clean, mean corruption, noise, FGSM and PGD."""
    scores = {"clean": accuracy(model, images, labels)}
    if corrupted:
        scores["corruption_mean"] = float(np.mean([accuracy(model, x, labels) for x in corrupted.values()]))
    for std in noise_stds:
        scores[f"noise_{std:g}"] = accuracy(model, gaussian_noise(images, std, seed=1), labels)
    for eps in epsilons:
        scores[f"fgsm_{eps:g}"] = accuracy(model, fgsm(model, images, labels, eps), labels)
        scores[f"pgd_{eps:g}"] = accuracy(model, pgd(model, images, labels, eps, pgd_steps), labels)
    return scores


def _neural_source(data: str, time_limit: float, seed: int) -> tuple[Any, Any, dict]:
    """A twin fitted with its defaults (and the data set's likelihood, as in the accuracy
    benchmark) on a real recording, the recording's held-out part, and the twin's test scores."""
    import probtwin as pt
    from probtwin.bench.accuracy import DATASETS

    if data not in DATASETS:
        raise DataError("data", f"one of {sorted(DATASETS)}", repr(data))
    load, likelihood = DATASETS[data]
    rec = load()
    twin = pt.ImageTwin(rec, likelihood=likelihood, seed=seed, posterior="readout")  # the figures on its page
    twin.fit(time_limit=time_limit, progress=False)
    held_out = rec.subset(np.flatnonzero(rec.tiers != "train"))
    return twin, held_out, twin.evaluate(rec, "test")


def run_transfer_comparison(
    data: str = "cowley_v4_210224",
    seeds: Sequence[int] = (5, 6, 7, 8, 9),
    twin_time_limit: float = 300.0,
    epochs: int = 10,
    epsilons: Sequence[float] = (0.02, 0.05, 0.1, 0.2),
    noise_stds: Sequence[float] = (0.2, 0.4),
    corruptions: Sequence[str] = CORRUPTIONS,
    n_test: int = 1000,
    n_train: int = 3000,
    twin: Any = None,
    similarity: Any = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """The robustness-transfer benchmark (see the module's description).

    Parameters
    ----------
    data : str
        The recording the twin is fitted on (a key of
        :data:`probtwin.bench.accuracy.DATASETS`); ignored when ``twin`` and ``similarity`` are
        given.
    seeds : sequence of int
        Classifier seeds (initialisation, batch order, the shuffled control).
    twin_time_limit : float
        Seconds of the twin's fit.
    epochs, epsilons, noise_stds, corruptions, n_test, n_train
        Classifier training and the test (the first ``n_test`` of the 1,000 test digits, the
        first ``n_train`` of the 3,000 training digits).
    twin, similarity : optional
        A fitted twin and a recording of similarity images (its stimuli and responses).

    Returns
    -------
    dict
        ``rows``: per seed and variant, the chosen weight and the test scores; ``summary``:
        mean and sd per variant; ``neural_minus_pixel`` and ``neural_draws_minus_neural``: the
        paired differences per score; ``twin``: the twin's held-out scores (when it was fitted
        here); ``data``, ``seeds``, ``epochs``, ``wall_seconds``.
    """
    import probtwin as pt

    started = time.perf_counter()
    twin_scores = None
    if twin is None or similarity is None:
        twin, similarity, twin_scores = _neural_source(data, twin_time_limit, 0)
    images, labels = pt.datasets.mnist_digits()
    order = np.random.default_rng(0).permutation(len(images))  # one split for every seed
    train, valid, test = order[:3000][:n_train], order[3000:4000], order[4000:][:n_test]
    corrupted = corrupted_sets(images[test], corruptions)
    checks = {c: corrupt(images[valid], c, 3, seed=103) for c in VALIDATION_CORRUPTIONS}  # noise unlike the test's
    rows = []
    for seed in seeds:
        for variant in VARIANTS:
            fitted = {}
            for weight in WEIGHTS if variant != "baseline" else (0.0,):
                fitted[weight] = fit_classifier(
                    images[train],
                    labels[train],
                    {"baseline": None, "neural_draws": "neural"}.get(variant, variant),
                    twin=twin,
                    similarity_images=similarity,
                    seed=seed,
                    weight=weight,
                    num_samples=DRAWS if variant == "neural_draws" else None,
                    epochs=epochs,
                    progress_bar=False,
                )
            validation = {
                w: np.mean([accuracy(m, x, labels[valid]) for x in checks.values()]) for w, m in fitted.items()
            }
            weight = max(validation, key=validation.get)
            scores = score_classifier(fitted[weight], images[test], labels[test], corrupted, epsilons, noise_stds)
            rows.append({"seed": seed, "variant": variant, "weight": weight, **scores})
            if verbose:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                print(f"seed {seed} {variant:12s} weight {weight:g}: {shown}", flush=True)
    out = summarise(rows)
    out.update(data=data, seeds=list(seeds), epochs=epochs, wall_seconds=time.perf_counter() - started)
    if twin_scores is not None:
        kept = ("single_trial_correlation", "correlation_to_average")
        out["twin"] = {k: twin_scores[k] for k in kept if k in twin_scores}
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd over seeds per variant, and each of ``PAIRS`` (first - second) paired over
    seeds with its 95% t-interval and p-value, as ``"{first}_minus_{second}"``."""
    from scipy import stats

    keys = [k for k in rows[0] if k not in ("seed", "variant", "weight")]
    summary = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        values = {k: np.array([r[k] for r in rows if r["variant"] == variant]) for k in keys}
        summary[variant] = {
            k: (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0) for k, v in values.items()
        }
    out = {"rows": rows, "summary": summary}
    by = {(r["seed"], r["variant"]): r for r in rows}
    for first, second in PAIRS:
        seeds = sorted({r["seed"] for r in rows if (r["seed"], first) in by and (r["seed"], second) in by})
        if len(seeds) < 2:
            continue
        paired = {}
        for k in keys:
            d = np.array([by[(s, first)][k] - by[(s, second)][k] for s in seeds])
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            p = float(stats.ttest_1samp(d, 0.0).pvalue) if d.std() > 0 else 1.0
            paired[k] = {"mean": float(d.mean()), "ci95": (float(d.mean() - half), float(d.mean() + half)), "p": p}
        out[f"{first}_minus_{second}"] = paired
    return out
