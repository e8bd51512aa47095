"""Recalibration of the readout posterior on held-out trials.

A variational posterior is narrower than it should be where the model is wrong, and a twin's
core always is somewhat: the readout-only posterior's 90% intervals of mean responses contain the
true mean far less often than 90% of the time (the "Whole-twin posterior" page). Held-out trials
measure how wrong the posterior-mean prediction is. For trial ``t`` and neuron ``i``, with
``f`` the mean response (a posterior draw of it), ``f_hat`` its posterior mean and ``y`` the
recorded response,

    E[(y - f_hat)^2] = E[(mu - f_hat)^2] + E[Var(y | f)],

the squared error of the mean response plus the observation noise. The posterior predictive gives
the noise, ``Var(y) - Var(f)`` over its draws (the law of total variance, whatever the noise
model), so the excess ``e_ti = (y - f_hat)^2 - (Var(y) - Var(f))`` estimates the mean response's
squared error without knowing the true mean. A calibrated posterior has
``Var(f) = E[(mu - f_hat)^2]``: the ratio ``rho_i = mean_t e_ti / mean_t Var(f)_ti`` is 1.

Each neuron's ratio is noisy (its standard error from the spread of ``e`` over trials), so the
ratios are shrunk toward the population's (empirical Bayes, a normal-normal model fitted by the
method of moments), and each neuron's posterior scales are then multiplied by the ``spread``
``s_i >= 1`` under which ``Var(f)`` matches the shrunk ratio times its variance at ``s = 1``
(bisection in ``log s``, the same draws throughout). A ratio below 1 leaves the neuron's
posterior as the fit left it: recalibration widens, it never narrows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probtwin.data.recording import Recording
from probtwin.errors import DataError

__all__ = ["Recalibration", "shrunk_ratios"]


def shrunk_ratios(excess: np.ndarray, variance: np.ndarray, per_neuron: bool = True) -> dict[str, np.ndarray]:
    """Each neuron's ratio of the mean response's squared error to its posterior variance,
    shrunk toward the population's.

    Parameters
    ----------
    excess : numpy.ndarray, shape (trials, neurons)
        Per trial (averaged over its frames where there are frames) the squared error of the
        posterior-mean prediction less the observation noise; NaN where not recorded.
    variance : numpy.ndarray, shape (trials, neurons)
        The posterior variance of the mean response, on the same trials.
    per_neuron : bool
        False: every neuron takes the population's ratio.

    Returns
    -------
    dict
        ``variance`` (neurons,) each neuron's mean posterior variance, ``ratio`` (neurons,)
        each neuron's own ratio, ``standard_error`` (neurons,) its standard error, ``pooled``
        the population's (sum of excess over sum of variance), ``between`` the variance of the
        true ratios across neurons (method of moments, at least 0), and ``shrunk`` (neurons,)
        the posterior mean of each neuron's ratio under ``ratio_i ~ Normal(r_i, se_i^2)``,
        ``r_i ~ Normal(pooled, between)``.
    """
    excess, variance = np.asarray(excess, float), np.asarray(variance, float)
    if excess.shape != variance.shape or excess.ndim != 2:
        raise DataError("excess", f"(trials, neurons) as variance {variance.shape}", f"{excess.shape}")
    seen = ~np.isnan(excess)
    counts = seen.sum(0)
    if np.any(counts < 2):
        raise DataError("excess", "at least 2 trials of every neuron", f"{int(counts.min())} for some neuron")
    v = np.where(seen, variance, 0.0).sum(0) / counts
    if np.any(v <= 0):
        raise DataError("variance", "a positive posterior variance of every neuron", "0 for some neuron")
    e = np.nanmean(excess, 0)
    ratio = e / v
    standard_error = np.nanstd(excess, 0, ddof=1) / np.sqrt(counts) / v
    pooled = float(np.sum(e * counts) / np.sum(v * counts))
    between = max(float(np.var(ratio) - np.mean(standard_error**2)), 0.0) if per_neuron else 0.0
    weight = between / (between + standard_error**2) if between > 0 else np.zeros_like(ratio)
    shrunk = pooled + weight * (ratio - pooled)
    return {
        "variance": v,
        "ratio": ratio,
        "standard_error": standard_error,
        "pooled": pooled,
        "between": between,
        "shrunk": shrunk,
    }


def _per_trial(values: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(trials, [frames,] neurons) to (trials, neurons): the mean over a trial's recorded frames."""
    if values.ndim == 2:
        return np.where(seen, values, np.nan)
    axes = tuple(range(1, values.ndim - 1))
    total = np.where(seen, values, 0.0).sum(axes)
    counts = seen.sum(axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, total / counts, np.nan)


#: draws x trials x frames x neurons held at once
_MAX_VALUES = 2**24


def _trial_chunks(rec: Recording, num_samples: int) -> list[Recording]:
    """``rec`` in consecutive chunks of trials whose draws hold at most ``_MAX_VALUES`` values."""
    per_trial = num_samples * (rec.n_frames or 1) * rec.n_neurons
    size = max(1, _MAX_VALUES // per_trial)
    return [rec.subset(np.arange(i, min(i + size, rec.n_trials))) for i in range(0, rec.n_trials, size)]


class Recalibration:
    """Mixin of :class:`~probtwin.twins.image.ImageTwin`: widen each neuron's readout posterior
    until its spread of mean responses matches its error on held-out trials."""

    def _before_fit(self) -> None:
        for readout in self.readouts:  # a fit starts from the posterior as fitted, not as widened
            if hasattr(readout, "spread"):
                readout.spread.fill_(1.0)

    @torch.no_grad()
    def recalibrate(
        self,
        rec: Recording,
        tier: str | None = "validation",
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
        per_neuron: bool = False,
        max_spread: float = 30.0,
        steps: int = 12,
    ) -> dict[str, Any]:
        """Widen each neuron's readout posterior to match its error on ``tier`` (the validation
        tier: never the test trials a calibration is checked on).

        Every posterior scale of neuron ``i`` (position, feature weights, bias, state weights) is
        multiplied by ``spread_i`` (:mod:`probtwin.twins.recalibration` has the estimator). The
        factors are saved with the twin and carried by every query; a new ``fit`` starts from 1.

        Parameters
        ----------
        rec : Recording
            A recording the twin was fitted on (the session's neurons), with the tier.
        tier : str or None
            Its trials that the fit did not train on; None: all of ``rec``.
        num_samples : int
            Posterior draws of the mean response and of the predictive responses.
        per_neuron : bool
            Each neuron's own ratio of error to variance (shrunk toward the population's);
            False (default): the population's ratio for every neuron. Each neuron's factor is the
            one that scales its own variance by the ratio.
        max_spread : float
            The largest factor.
        steps : int
            Bisection steps in ``log spread``.

        Returns
        -------
        dict
            ``spread`` (neurons,), and from :func:`shrunk_ratios`: ``variance`` (at a spread
            of 1), ``ratio``, ``standard_error``, ``pooled``, ``between``, ``shrunk``.
        """
        if not max_spread >= 1:
            raise DataError("max_spread", "a factor of at least 1", repr(max_spread))
        part = rec.split(tier) if tier is not None else rec
        k, *_ = self._inputs(part, session)
        readout = self.readouts[k]
        if not hasattr(readout, "spread"):
            raise DataError("twin", "a twin with the image readout (ImageTwin, VideoTwin)", type(self).__name__)
        readout.spread.fill_(1.0)
        chunks = [(c, ~np.isnan(np.asarray(c.responses, float))) for c in _trial_chunks(part, num_samples)]

        def mean_draws(chunk: Recording) -> np.ndarray:
            return self.predict(chunk, num_samples=num_samples, seed=seed, session=session).samples

        def posterior_variance() -> np.ndarray:  # (trials, neurons)
            return np.concatenate([_per_trial(mean_draws(c).var(0), seen) for c, seen in chunks])

        excess, variance = [], []
        for c, (chunk, seen) in enumerate(chunks):  # the same posterior draws, fresh noise in each chunk
            f = mean_draws(chunk)
            predictive = np.asarray(self.sample(chunk, num_samples=num_samples, seed=seed + 1 + c, session=session))
            error = (np.asarray(chunk.responses, float) - f.mean(0)) ** 2
            excess.append(_per_trial(error - (predictive.var(0) - f.var(0)), seen))
            variance.append(_per_trial(f.var(0), seen))
        out = shrunk_ratios(np.concatenate(excess), np.concatenate(variance), per_neuron=per_neuron)
        goal = np.maximum(out["shrunk"], 1.0) * out["variance"]
        lo, hi = np.zeros_like(goal), np.where(out["shrunk"] > 1, np.log(max_spread), 0.0)
        device, dtype = readout.spread.device, readout.spread.dtype
        for _ in range(steps):
            mid = (lo + hi) / 2
            readout.spread.copy_(torch.as_tensor(np.exp(mid), device=device, dtype=dtype))
            wide = np.nanmean(posterior_variance(), 0)
            lo, hi = np.where(wide < goal, mid, lo), np.where(wide < goal, hi, mid)
        spread = np.exp((lo + hi) / 2)
        readout.spread.copy_(torch.as_tensor(spread, device=device, dtype=dtype))
        return {"spread": spread, **out}
