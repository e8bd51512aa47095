"""Calibration: do the twin's intervals contain the truth as often as they say?

Two checks, on any posterior or posterior predictive draws against what they predict:

- **coverage of central intervals** over a range of nominal levels (a reliability curve): the
  fraction of true values inside the central ``level`` interval of the draws, which a
  calibrated twin puts on the diagonal;
- the **probability integral transform** (PIT) ``u = F(y)``, the fraction of draws below the
  true value (randomized within ties, so that counts are uniform too, Czado et al. 2009): a
  calibrated twin's PIT histogram is flat; a U shape says too narrow, a hump too wide, a slope
  biased.

Coverage is read off the PIT: ``y`` lies inside the central ``level`` interval exactly when
``(1 - level)/2 <= u <= (1 + level)/2``. Against a simulator's true mean responses
(:func:`mean_calibration`) the draws are of the twin's mean (``predict``); on real data
(:func:`single_trial_calibration`) they are posterior predictive responses (``sample``) against
each observed trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probtwin import metrics
from probtwin.data.recording import Recording
from probtwin.errors import DataError

__all__ = ["LEVELS", "Calibration", "calibration", "mean_calibration", "plot_calibration", "single_trial_calibration"]

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
"""Nominal levels of the reliability curve."""


@dataclass
class Calibration:
    """Coverage of central intervals and the PIT of each value.

    Attributes
    ----------
    levels : numpy.ndarray, shape (levels,)
        Nominal levels.
    coverage : numpy.ndarray, shape (levels,)
        Fraction of values inside the central interval of each level.
    pit : numpy.ndarray, shape (...)
        The PIT of every value (the shape of the values).
    bins : int
        Bins of :attr:`histogram`.
    label : str
    """

    levels: np.ndarray
    coverage: np.ndarray
    pit: np.ndarray
    bins: int = 10
    label: str = ""
    attrs: dict = field(default_factory=dict)

    @property
    def histogram(self) -> np.ndarray:
        """PIT density per bin, (bins,): 1 everywhere for a calibrated twin."""
        counts, _ = np.histogram(self.pit.ravel(), bins=self.bins, range=(0.0, 1.0))
        return counts * self.bins / max(self.pit.size, 1)

    def at(self, level: float) -> float:
        """Coverage at a nominal level (computed from the PIT, any level in (0, 1))."""
        return _coverage(self.pit, level)

    def __repr__(self) -> str:
        rows = ", ".join(f"{lv:g}: {c:.3f}" for lv, c in zip(self.levels, self.coverage, strict=True))
        return f"Calibration({self.label or 'values'}: {self.pit.size} values; coverage {{{rows}}})"


def _coverage(u: np.ndarray, level: float) -> float:
    tail = (1 - level) / 2
    return float(np.mean((u >= tail) & (u <= 1 - tail)))


def calibration(
    samples: np.ndarray,
    observed: np.ndarray,
    levels: tuple[float, ...] = LEVELS,
    bins: int = 10,
    seed: int = 0,
    label: str = "",
) -> Calibration:
    """Coverage curve and PIT of draws against the values they predict.

    Parameters
    ----------
    samples : numpy.ndarray, shape (draws, ...)
        Posterior (or posterior predictive) draws.
    observed : numpy.ndarray, shape (...)
        The true (or observed) values.
    levels : tuple of float in (0, 1)
    bins : int
        PIT histogram bins.
    seed : int
        Seed of the randomization within ties.

    Returns
    -------
    Calibration
    """
    levels_arr = np.asarray(levels, dtype=float)
    if levels_arr.ndim != 1 or not np.all((levels_arr > 0) & (levels_arr < 1)):
        raise DataError("levels", "nominal levels in (0, 1)", repr(levels))
    s, y = np.asarray(samples), np.asarray(observed)
    if not np.all(np.isfinite(y)):
        raise DataError("observed", "finite values", f"{int(np.sum(~np.isfinite(y)))} non-finite")
    u = metrics.pit(s, y, seed=seed)
    coverage = np.array([_coverage(u, lv) for lv in levels_arr])
    return Calibration(levels_arr, coverage, u, int(bins), label)


def mean_calibration(
    twin: Any, x: Recording | np.ndarray, truth: np.ndarray, num_samples: int = 200, seed: int = 0, **predict: Any
) -> Calibration:
    """Calibration of the twin's posterior mean responses against known true means (a simulator's,
    e.g. ``sim.respond(images, behavior, gaze)``).

    Parameters
    ----------
    x : Recording or numpy.ndarray
        What :meth:`predict` takes (a recording's trials, or stimuli).
    truth : numpy.ndarray, shape (trials, neurons)
        The true mean response on each trial.
    predict
        Further arguments of ``twin.predict`` (``session``, ``behavior``, ``gaze``).
    """
    draws = twin.predict(x, num_samples=num_samples, seed=seed, **predict).samples
    truth = np.asarray(truth)
    if truth.shape != draws.shape[1:]:
        raise DataError("truth", f"true means of shape {draws.shape[1:]} (trials, neurons)", f"{truth.shape}")
    return calibration(draws, truth, seed=seed, label="mean response")


def single_trial_calibration(
    twin: Any, rec: Recording, tier: str | None = "test", num_samples: int = 200, seed: int = 0, session: Any = None
) -> Calibration:
    """Calibration of the posterior predictive on each observed trial and neuron of a tier
    (randomized PIT: counts included)."""
    part = rec.split(tier) if tier is not None else rec
    draws = twin.sample(part, num_samples=num_samples, seed=seed, session=session)
    return calibration(draws, np.asarray(part.responses), seed=seed, label=f"single trials ({tier})")


def plot_calibration(results: Calibration | list[Calibration], axes: Any = None) -> Any:
    """Reliability curve (coverage against nominal level) and PIT histogram, one line and one
    histogram per result.

    Parameters
    ----------
    results : Calibration or list of Calibration
    axes : two matplotlib axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    results = [results] if isinstance(results, Calibration) else list(results)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    else:
        fig = axes[0].figure
    curve, hist = axes
    curve.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    for r in results:
        curve.plot(r.levels, r.coverage, marker="o", ms=3, label=r.label or None)
        centres = (np.arange(r.bins) + 0.5) / r.bins
        hist.step(centres, r.histogram, where="mid", label=r.label or None)
    curve.set(xlabel="nominal level", ylabel="coverage", xlim=(0, 1), ylim=(0, 1), title="central intervals")
    hist.axhline(1.0, color="0.6", lw=1, ls="--")
    hist.set(xlabel="PIT", ylabel="density", xlim=(0, 1), title="PIT histogram")
    if any(r.label for r in results):
        curve.legend(fontsize=8)
    fig.tight_layout()
    return fig
