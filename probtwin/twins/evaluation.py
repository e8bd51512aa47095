"""Held-out evaluation of a stimulus-response twin: the Sensorium 2022 scores, the log posterior
predictive density and the calibration of its predictive intervals, from one pass of the query
engine over the trials."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from probtwin import metrics
from probtwin.data.padding import recorded_frames
from probtwin.data.recording import Recording
from probtwin.infer import query as q
from probtwin.infer import seeded
from probtwin.twins.noise import NoiseModel, per_frame

__all__ = ["Evaluation", "mixture_log_predictive"]


def mixture_log_predictive(members: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The log predictive density of an equal-weight mixture of members, and its Monte Carlo
    standard error (delta method), from each member's.

    ``log p(y) = log (1/K) sum_m p_m(y)``: each member weighs 1/K whatever its share of the
    draws (the members' posteriors, not the neurons', are what is mixed).

    Parameters
    ----------
    members : torch.Tensor, shape (K, 2, trials)
        Per member: log density (nats) and the standard error of its estimate.

    Returns
    -------
    log_predictive, standard_error : torch.Tensor, shape (trials,)
    """
    lp, se = members[:, 0], members[:, 1]
    k = members.shape[0]
    log_p = torch.logsumexp(lp, 0) - math.log(k)
    # var(p_hat) = (1/K^2) sum_m (p_m se_m)^2, in logs: se(log p_hat) = sqrt(var) / p_hat
    log_var = torch.logsumexp(2 * (lp + torch.log(se.clamp_min(1e-300))), 0) - 2 * math.log(k)
    return log_p, torch.where(se.max(0).values > 0, torch.exp(0.5 * log_var - log_p), torch.zeros_like(log_p))


class Evaluation:
    """Mixin of the stimulus-response twins: ``evaluate`` and ``log_predictive``."""

    @torch.no_grad()
    def log_predictive(
        self,
        rec: Recording,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
    ) -> np.ndarray:
        """Log posterior predictive density of each trial's population response, (trials,), nats.

        Independent noise: ``sum_i log mean_s p(y_ti | theta_s)`` (the neurons' posteriors are
        independent). Flows: analytic (see :class:`~probtwin.twins.noise.FlowNoise`). Latent
        counts: an importance-weighted bound with ``num_samples`` draws.
        """
        return self._scores(rec, num_samples, seed, session, conditional=False)["log_predictive"]

    def _scores(self, rec: Recording, num_samples: int, seed: int, session: Any, conditional: bool) -> dict:
        """One pass over the trials: posterior mean, predictive draws, log densities and
        (``conditional``) predictions of each half of the neurons from the other half."""
        k, stimuli, behavior, gaze = self._inputs(rec, session)
        y = self._check_responses(k, rec)
        noise = self.noise[k]
        n_trials, n_neurons = y.shape[0], y.shape[-1]
        frames = y.ndim == 3  # per-frame responses: the noise model scores each frame's population
        recorded, held = recorded_frames(y)  # (trials, frames): padding frames False
        out = {
            "responses": y,
            "mean": np.empty(y.shape, np.float32),
            "samples": np.empty((num_samples, *y.shape), np.float32),
            "log_predictive": np.empty(n_trials),
            "standard_error": np.zeros(n_trials),
        }
        halves = None
        if conditional and noise.rank:
            out["conditional"] = np.empty(y.shape, np.float32)
            perm = np.random.default_rng(seed).permutation(n_neurons)
            first = torch.zeros(n_neurons, dtype=torch.bool, device=self.device)
            first[torch.as_tensor(perm[: n_neurons // 2], device=self.device)] = True
            halves = (first, ~first)
        site = f"responses_{k}"
        point = self._posterior_draws(k, None) if noise.rank else None
        fn = q.distribution(site)

        extras: dict[int, tuple] = {}  # per chunk: what its readers took, kept for its scores

        def chunk(sl: slice, batch: dict) -> tuple:
            # the location at the posterior mean: the latent count bound's guide and the halves' latent state
            center = self._point_location(k, batch, point) if noise.rank else None
            b = per_frame(batch.get("behavior"), y.shape[1]) if frames else batch.get("behavior")
            mask = None if recorded is None else torch.as_tensor(recorded[sl], device=self.device)
            extras[sl.start] = (self._tensor(held[sl]), center, b, mask)
            return extras[sl.start]

        def log_predictive(trace, extra) -> torch.Tensor:
            """Per member (run under its parameters): its log predictive density and standard
            error, (1, 2, chunk); per-frame responses: of each trial's recorded frames."""
            *given, mask = extra
            loc = fn(trace, ()).loc
            if frames:
                lp, se = noise.log_predictive_frames(loc, *given, mask)
            else:
                lp, se = noise.log_predictive(loc, *given)
                se = torch.zeros_like(lp) if se is None else se
            return torch.stack([lp, se])[None]

        log_predictive.site, log_predictive.needs_value = site, False
        readers = {"mean": q.mean(site), "draw": q.draw(site), "log_predictive": log_predictive}
        with seeded(seed, self.device):
            for sl, _batch, res in self._run(k, stimuli, behavior, gaze, num_samples, readers, extra=chunk):
                self._score_chunk(out, sl, res, extras.pop(sl.start), noise, halves)
        if recorded is not None and not recorded.all():  # no prediction where a trial has no frame
            for key in ("mean", "conditional"):
                if key in out:
                    out[key][~recorded] = np.nan
            out["samples"][:, ~recorded] = np.nan
        return out

    @staticmethod
    def _score_chunk(out: dict, sl: slice, res: dict, given: tuple, noise: NoiseModel, halves) -> None:
        """The scores of one chunk of trials (see :meth:`_scores`): the engine's readings
        ``res``; ``given``: the responses, the location at the posterior mean, the behaviour
        and (per frame) the recorded frames."""
        yt, center, b, frame_mask = given
        out["mean"][sl] = res["mean"].mean(0).cpu().numpy()
        out["samples"][:, sl] = res["draw"].cpu().numpy()
        lp, se = mixture_log_predictive(res["log_predictive"].double())
        out["log_predictive"][sl] = lp.cpu().numpy()
        out["standard_error"][sl] = se.cpu().numpy()
        if halves is not None:
            cond = torch.empty_like(yt)
            for observed, target in (halves, halves[::-1]):
                if frame_mask is None:
                    mean, cov = noise.latent_posterior(center, yt, observed, b)
                else:
                    mean, cov = noise.latent_posterior_frames(center, yt, observed, b, frame_mask)
                cond[..., target] = noise.conditional_mean(center, mean, cov)[..., target]
            out["conditional"][sl] = cond.cpu().numpy()

    def evaluate(
        self, rec: Recording, tier: str = "test", num_samples: int = 100, seed: int = 0, session: Any = None
    ) -> dict[str, float]:
        """Held-out scores (Sensorium 2022 definitions; see :mod:`probtwin.metrics`).

        Returns
        -------
        dict
            ``single_trial_correlation`` (mean over neurons), ``correlation_to_average`` and
            ``feve`` (where stimuli repeat), ``log_likelihood_bits`` (log posterior predictive
            density of each trial's population response, bits per neuron per trial; see
            :meth:`log_predictive`), ``log_likelihood_kind`` (``"pointwise"``, ``"analytic"``,
            ``"dequantized lower bound"`` or ``"importance-weighted bound"``),
            ``log_likelihood_mc_error`` (its Monte Carlo standard error, bits per neuron per
            trial; 0 where there is none) and ``log_likelihood_samples``, ``coverage_90``
            (randomized PIT of posterior predictive draws), ``n_trials``; with a latent state,
            ``conditional_correlation``: the single-trial correlation of each neuron's
            prediction given the responses of the other half of the population on the same
            trial (a random half, seeded; posterior-mean parameters).
        """
        part = rec.split(tier) if tier is not None else rec
        k, *_ = self._inputs(part, session)
        with torch.no_grad():
            out = self._scores(part, num_samples, seed, session, conditional=True)
        y = out["responses"]
        n_values = int(np.sum(~np.isnan(y)))  # per neuron and trial (and recorded frame)
        scores = {
            "single_trial_correlation": float(np.nanmean(metrics.single_trial_correlation(y, out["mean"]))),
            "log_likelihood_bits": float(out["log_predictive"].sum() / n_values / np.log(2)),
            "log_likelihood_kind": self.noise[k].log_likelihood_kind,
            "log_likelihood_mc_error": float(np.sqrt((out["standard_error"] ** 2).sum()) / n_values / np.log(2)),
            "log_likelihood_samples": num_samples,
            "coverage_90": metrics.interval_coverage(out["samples"], y, 0.9, seed=seed),
            "n_trials": part.n_trials,
        }
        if "conditional" in out:
            scores["conditional_correlation"] = float(
                np.nanmean(metrics.single_trial_correlation(y, out["conditional"]))
            )
        if part.has_repeats:
            ids = part.stimulus_ids
            scores["correlation_to_average"] = float(np.nanmean(metrics.correlation_to_average(y, out["mean"], ids)))
            scores["feve"] = metrics.feve(y, out["mean"], ids)
        return scores
