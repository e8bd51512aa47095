"""The queries of the motor graph twin: rates given spikes (smoothing and co-smoothing),
behaviour decoded from spikes, synthetic trials, interventions on units and edges, the edges'
and states' posteriors, held-out scores and the ArviZ export."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from probtwin import metrics
from probtwin.arviz import posterior_arrays
from probtwin.data.batching import batch_arrays
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer import query as q
from probtwin.infer import seeded
from probtwin.infer.progress import progress
from probtwin.twins.prediction import Prediction
from probtwin.twins.queries import _MAX_ELEMENTS

__all__ = ["MotorQueries"]


class MotorQueries:
    """Mixin of :class:`~probtwin.twins.motor.MotorGraphTwin` (its model, guide, draws and
    rollout are the twin's)."""

    def _trial_batches(self, rec: Recording, per_trial: int):
        """(trial index, standardised batch) in chunks whose working set stays under the bound."""
        size = max(1, _MAX_ELEMENTS // max(1, per_trial))
        for start in progress(range(0, rec.n_trials, size), "query", unit="chunk"):
            idx = np.arange(start, min(start + size, rec.n_trials))
            yield idx, self._batch(0, batch_arrays(rec, idx))

    def _per_trial(self, rec: Recording, num_samples: int, factor: int = 4) -> int:
        return num_samples * rec.n_frames * self.specs[0].n_neurons * self.latent_dim * factor

    def _part(self, rec: Recording, tier: str | None) -> Recording:
        if not isinstance(rec, Recording):
            raise DataError("recording", "a probtwin.Recording", type(rec).__name__)
        part = rec.split(tier) if tier is not None else rec
        spec = self.specs[0]
        if part.n_frames is None or part.n_neurons != spec.n_neurons:
            raise DataError(
                "responses", f"a time series of {spec.n_neurons} units (the twin's)", f"shape {part.responses.shape}"
            )
        return part

    def _raw_behavior(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.behavior_std_0 + self.behavior_mean_0

    # ------------------------------------------------------------------ queries

    @torch.no_grad()
    def predict(
        self,
        x: Recording,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
        given: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Prediction:
        """Posterior draws of each unit's firing rate given the trials' spikes (smoothing).

        Parameters
        ----------
        x : Recording
            The trials (their spikes and task inputs).
        num_samples : int
        seed : int
        session : optional
            The twin's one session (accepted for the signature every twin shares).
        given : (unit_index, spikes), optional
            Co-smoothing: the spikes (trials, frames, len(unit_index)) of some units are all the
            guide sees, and the rates of the *other* units are predicted.

        Returns
        -------
        Prediction
            ``.samples`` (num_samples, trials, frames, units) in spikes per bin; with ``given``,
            of the other units only (``.neuron_ids`` says which).
        """
        self.session_index(session)
        part = self._part(x, None)
        ids = np.asarray(self.specs[0].neuron_ids)
        units = np.arange(len(ids))
        show = None
        if given is not None:
            index, spikes = self._given(0, given, part.n_trials, part.n_frames)
            units = np.setdiff1d(units, index)

            def show(idx: np.ndarray, batch: dict) -> None:  # the guide sees the given units' spikes only
                shown = torch.as_tensor(index, device=self.device)
                batch["responses"] = torch.zeros_like(batch["responses"])
                batch["responses"][..., shown] = self._tensor(spikes[idx])
                batch["observed"] = torch.zeros(len(idx), len(ids), dtype=torch.bool, device=self.device)
                batch["observed"][:, shown] = True

        keep = None if given is None else torch.as_tensor(units, device=self.device)
        out = self._collect(part, num_samples, seed, q.mean("responses"), show, keep)
        return Prediction(out, ids[units])

    def query(self) -> q.Query:
        """The twin as the query engine sees it (:mod:`probtwin.infer.query`)."""
        return q.Query(self.model, self.guide, max_plate_nesting=1, data_plates={"trials"})

    def _engine_chunks(self, part: Recording, num_samples: int, factor: int = 4, prepare=None):
        """The engine's chunks of trials, ``(trial index, (batch,))``, sized for ``num_samples``
        draws; ``prepare(idx, batch)`` edits a batch in place first."""
        for idx, batch in self._trial_batches(part, self._per_trial(part, num_samples, factor)):
            if prepare is not None:
                prepare(idx, batch)
            yield idx, (batch,)

    def _collect(self, part: Recording, num_samples: int, seed: int, reader, prepare=None, select=None) -> np.ndarray:
        """One reader of the engine over the trials in chunks, (num_samples, trials, ...)."""
        chunks = self._engine_chunks(part, num_samples, prepare=prepare)
        self.train(False)
        with seeded(seed, self.device):
            return q.collect(self.query(), chunks, num_samples, reader, part.n_trials, select)

    def _require_behavior(self) -> None:
        if not self.n_behavior:
            raise DataError("behavior", "a twin fitted with behaviour", "a twin without behaviour")

    @torch.no_grad()
    def decode_behavior(
        self, recording: Recording, tier: str | None = "test", num_samples: int = 100, seed: int = 0
    ) -> Prediction:
        """Posterior draws of the behaviour (e.g. hand velocity) decoded from the trials' spikes.

        The guide infers the node states from spikes (and task inputs) only; each draw takes a
        draw of the states and of the behaviour readout. The decoder is a smoother: a frame's
        value uses the whole trial's spikes.

        Returns
        -------
        Prediction
            ``.samples`` (num_samples, trials, frames, dims) in the behaviour's units: ``.mean``
            and ``.quantile(q)`` of the mean behaviour.
        """
        self._require_behavior()
        part = self._part(recording, tier)
        standardised = self._collect(part, num_samples, seed, q.mean("behavior"))  # the guide never sees it
        return Prediction(self._raw_behavior(torch.as_tensor(standardised, device=self.device)).cpu().numpy(), None)

    @torch.no_grad()
    def recalibrate_behavior(
        self, recording: Recording, tier: str | None = "validation", num_samples: int = 100, seed: int = 0
    ) -> dict[str, np.ndarray]:
        """Set the behaviour's noise scale from the decode's error on ``tier`` (the validation
        tier: never the test trials a calibration is checked on).

        The fitted scale ``rho`` is a point estimate from the training windows; a decoder fitted
        with a heavy ``behavior_weight`` and stopped by its decode fits those windows closely, so
        ``rho`` comes out too small and its intervals too narrow. Per behaviour dimension ``k``,
        ``rho_k^2 = mean (v - E[m])^2 - mean Var[m]`` over the tier's bins, where ``m`` is the
        decoded mean behaviour and ``E``, ``Var`` are over ``num_samples`` posterior draws: the
        predictive variance then equals the tier's squared error (``rho_k`` at least 0.001 of the
        behaviour's standard deviation). The scale is a parameter of the twin: it is saved with
        it, carried by every query, and refitted by a new ``fit``.

        Returns
        -------
        dict
            ``scale_before`` and ``scale`` (dims,), in the behaviour's units.
        """
        self._require_behavior()
        part = self._part(recording, tier)
        if part.behavior is None:
            raise DataError("behavior", "recorded behaviour to calibrate against", "None")
        decoded = self.decode_behavior(part, None, num_samples, seed)
        dims = decoded.samples.shape[-1]
        v = np.asarray(part.behavior, dtype=np.float64)
        error = ((v - decoded.mean) ** 2).reshape(-1, dims).mean(0)
        spread = decoded.samples.var(0).reshape(-1, dims).mean(0)
        std = self.behavior_std_0.detach().cpu().numpy().astype(np.float64)
        before = (self.behavior_likelihood.scale.detach().cpu().numpy() * std).astype(np.float64)
        noise = np.sqrt(np.maximum(error - spread, (1e-3 * std) ** 2))
        self.behavior_likelihood.init_scale(noise / std)
        return {"scale_before": before, "scale": noise}

    @torch.no_grad()
    def sample(
        self,
        recording: Recording,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
        *,
        tier: str | None = None,
        initial: str = "posterior",
    ) -> dict[str, np.ndarray]:
        """Synthetic spikes and behaviour: the generative model run forward through each trial.

        Parameters
        ----------
        recording : Recording
            The trials' task inputs (and, with ``initial="posterior"``, their spikes).
        initial : {"posterior", "prior"}
            Start each trial from the posterior of its first frame's states given its spikes,
            or from the prior (a wholly synthetic trial).

        Returns
        -------
        dict
            ``"responses"`` (num_samples, trials, frames, units) spike counts and ``"behavior"``
            (num_samples, trials, frames, dims) with observation noise; ``"states"`` is not kept.
        """
        self.session_index(session)
        if initial not in ("posterior", "prior"):
            raise DataError("initial", "'posterior' or 'prior'", repr(initial))
        part = self._part(recording, tier)
        readers = {"responses": q.draw("responses")}
        if self.n_behavior:
            readers["behavior"] = q.draw("behavior")
        out = {
            name: np.empty((num_samples, part.n_trials, part.n_frames, n), np.float32)
            for name, n in (("responses", self.specs[0].n_neurons), ("behavior", self.n_behavior))
            if name in readers
        }
        # the model run forward: the guide gives only the initial state (or nothing)
        chunks = self._engine_chunks(part, num_samples, 6, prepare=lambda idx, batch: batch.update(simulate=initial))
        self.train(False)
        with seeded(seed, self.device):
            for idx, res in q.run(self.query(), chunks, num_samples, readers):
                out["responses"][:, idx] = res["responses"].cpu().numpy()
                if self.n_behavior:
                    out["behavior"][:, idx] = self._raw_behavior(res["behavior"]).cpu().numpy()
        return out

    @torch.no_grad()
    def intervention_effects(
        self,
        recording: Recording,
        silenced: np.ndarray | None = None,
        edge_mask: np.ndarray | None = None,
        drive: np.ndarray | None = None,
        num_samples: int = 100,
        seed: int = 0,
        statistic: str = "rms",
    ) -> np.ndarray:
        """Posterior draws of the effect of interventions on behaviour, (num_samples, interventions).

        A counterfactual of the recorded trials, run by the query engine
        (:func:`probtwin.infer.query.interventions`): each draw takes the edge weights and
        behaviour readout, and each trial's innovations (initial state and process noise) from
        their posterior given its spikes; the model runs intact and, on the same draws, under
        ``poutine.do`` on its intervention sites (``edge_gate``, ``silenced`` with ``clamp``,
        ``drive``), and the mean behaviour is compared by :func:`probtwin.metrics.behavior_effect`.
        Interventions run many at once, in chunks that keep the working set bounded; every chunk
        sees the same draws.

        Parameters
        ----------
        silenced : bool array (interventions, units), optional
            Units clamped at their posterior mean state over the trials' frames and the draws
            (lesions; see :func:`probtwin.experiments.lesion`).
        edge_mask : bool array (interventions, edges), optional
            Edges cut (their weight set to zero).
        drive : array (interventions, frames, units, d), optional
            Added to the states (stimulation).
        """
        self._require_behavior()
        given = {k: v for k, v in (("silenced", silenced), ("edge_mask", edge_mask), ("drive", drive)) if v is not None}
        if len(given) != 1:
            raise DataError("intervention", "exactly one of silenced, edge_mask, drive", f"{len(given)} given")
        part = self._part(recording, None)
        ((name, values),) = given.items()
        n, d, edges = self.specs[0].n_neurons, self.latent_dim, self.edge_index.shape[1]
        expected = {"silenced": (n,), "edge_mask": (edges,), "drive": (part.n_frames, n, d)}[name]
        values = np.asarray(values)
        if values.ndim != len(expected) + 1 or values.shape[1:] != expected:
            raise DataError(name, f"an array (interventions, {', '.join(map(str, expected))})", f"{values.shape}")
        self.train(False)
        clamp = self._mean_state(part, num_samples, seed) if name == "silenced" else None
        per_trial = self._per_trial(part, num_samples)
        host = num_samples * part.n_trials * part.n_frames * self.n_behavior
        most = max(1, min(_MAX_ELEMENTS // max(1, host), _MAX_ELEMENTS // per_trial))
        per = min(len(values), most)
        out = np.empty((num_samples, len(values)))
        for start in range(0, len(values), per):  # chunks of interventions, each run at once
            chunk = torch.as_tensor(values[start : start + per], device=self.device)
            if name == "silenced":  # the model's intervention sites (see MotorGraphTwin._intervention_sites)
                do = {"silenced": chunk.float(), "clamp": clamp.expand(len(chunk), n, d)}
            elif name == "edge_mask":
                do = {"edge_gate": (~chunk.bool()).float()}
            else:
                do = {"drive": chunk.float()}
            intact = np.empty((num_samples, part.n_trials, part.n_frames, self.n_behavior), np.float32)
            forced = np.empty((len(chunk), *intact.shape), np.float32)
            trials = self._engine_chunks(part, num_samples, 4 * (most + 1))  # the same chunks of trials always
            with seeded(seed, self.device):  # so every chunk of interventions sees the same draws
                for idx, a, b in q.interventions(self.query(), trials, "behavior", num_samples, do, len(chunk)):
                    intact[:, idx], forced[:, :, idx] = self._raw_behavior(a).cpu(), self._raw_behavior(b).cpu()
            out[:, start : start + len(chunk)] = metrics.behavior_effect(intact, forced, statistic).T
        return out

    def _mean_state(self, part: Recording, num_samples: int, seed: int) -> torch.Tensor:
        """Each unit's posterior mean state over the trials, frames and draws, (units, d)."""
        total = torch.zeros(self.specs[0].n_neurons, self.latent_dim, device=self.device)
        with seeded(seed, self.device):
            chunks = self._engine_chunks(part, num_samples)
            for _, res in q.run(self.query(), chunks, num_samples, {"x": q.draw("states")}):
                total += res.pop("x").sum((0, 1, 2))
        return total / (num_samples * part.n_trials * part.n_frames)

    @torch.no_grad()
    def edges(self, level: float = 0.9) -> Any:
        """Posterior of each edge weight: a DataFrame with ``source``, ``target`` (unit ids),
        ``mean``, ``sd``, ``lower``, ``upper`` (central ``level`` interval) and ``z`` = mean / sd."""
        import pandas as pd

        if not 0 < level < 1:
            raise DataError("level", "a probability in (0, 1)", repr(level))
        ids = np.asarray(self.specs[0].neuron_ids)
        e = self.edge_index.cpu().numpy()
        mean = self.edge_loc.detach().cpu().numpy().astype(np.float64)
        sd = F.softplus(self.raw_edge_scale).detach().cpu().numpy().astype(np.float64)
        z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2)))
        return pd.DataFrame(
            {
                "source": ids[e[0]],
                "target": ids[e[1]],
                "mean": mean,
                "sd": sd,
                "lower": mean - z * sd,
                "upper": mean + z * sd,
                "z": mean / sd,
            }
        )

    @torch.no_grad()
    def latent_state(
        self,
        rec: Recording,
        tier: str | None = "test",
        level: float = 0.9,
        session: Any = None,
        *,
        num_samples: int = 100,
        seed: int = 0,
    ) -> dict[str, np.ndarray]:
        """Posterior of every node's state given the trials' spikes, from ``num_samples`` draws.

        Returns
        -------
        dict
            ``mean``, ``sd``, ``lower``, ``upper`` (central ``level`` interval), each (trials,
            frames, units, d), and ``trial_index`` (the rows in ``rec``).
        """
        self.session_index(session)
        if not 0 < level < 1:
            raise DataError("level", "a probability in (0, 1)", repr(level))
        self.train(False)
        part = self._part(rec, tier)
        shape = (part.n_trials, part.n_frames, self.specs[0].n_neurons, self.latent_dim)
        out = {key: np.empty(shape, np.float32) for key in ("mean", "sd", "lower", "upper")}
        probs = torch.tensor([(1 - level) / 2, (1 + level) / 2], device=self.device)
        chunks = self._engine_chunks(part, num_samples)
        with seeded(seed, self.device):  # the model's "states" site, on the guide's draws given the spikes
            for idx, res in q.run(self.query(), chunks, num_samples, {"x": q.draw("states")}):
                x = res.pop("x")
                bounds = torch.quantile(x, probs.to(x), dim=0)
                out["mean"][idx], out["sd"][idx] = x.mean(0).cpu().numpy(), x.std(0).cpu().numpy()
                out["lower"][idx], out["upper"][idx] = bounds[0].cpu().numpy(), bounds[1].cpu().numpy()
        out["trial_index"] = part.trial_index
        return out

    # ------------------------------------------------------------------ evaluation

    def _constant_rate_log_prob(self, y: np.ndarray) -> np.ndarray:
        rate = torch.as_tensor(self.response_mean_0.cpu().numpy().clip(1e-6)).float()
        return self.noise[0].likelihood.distribution(rate.expand(y.shape).clone()).log_prob(torch.as_tensor(y)).numpy()

    @torch.no_grad()
    def _log_prob(self, rates: np.ndarray, y: np.ndarray, units: np.ndarray) -> np.ndarray:
        lik = self.noise[0].likelihood
        if lik.name != "poisson" and len(units) != self.specs[0].n_neurons:
            raise DataError("likelihood", "'poisson' for co-smoothing scores", repr(lik.name))
        return lik.distribution(torch.as_tensor(rates).clamp_min(1e-8)).log_prob(torch.as_tensor(y)).numpy()

    def _decoded_r2(self, part: Recording, num_samples: int, seed: int) -> tuple[np.ndarray, Prediction]:
        """R^2 per behaviour dimension of the posterior mean decode of ``part``'s trials, and the decode."""
        if part.behavior is None:
            raise DataError("behavior", "recorded behaviour to score the decode against", "None")
        decoded = self.decode_behavior(part, None, num_samples, seed)
        return metrics.r_squared(np.asarray(part.behavior, dtype=np.float64), decoded.mean), decoded

    def evaluate(
        self,
        rec: Recording,
        tier: str = "test",
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
        *,
        held_out_fraction: float = 0.25,
    ) -> dict[str, float]:
        """Held-out scores.

        Returns
        -------
        dict
            ``behavior_r2`` (decoded behaviour, posterior mean, ``1 - SSE/SST`` averaged over
            dims) and ``behavior_r2_per_dim``; ``behavior_coverage_90`` (observed behaviour inside
            the central 90% posterior predictive interval, observation noise included);
            ``bits_per_spike`` (smoothed rates of all units against each unit's constant train
            rate); ``co_smoothing_bits_per_spike`` (the rates of a random ``held_out_fraction``
            of the units, seeded, predicted from the other units' spikes); ``held_out_units``;
            ``n_trials``.
        """
        self.session_index(session)
        if not 0 < held_out_fraction < 1:
            raise DataError("held_out_fraction", "a fraction in (0, 1)", repr(held_out_fraction))
        part = self._part(rec, tier)
        y = np.asarray(part.responses, dtype=np.float32)
        n = y.shape[-1]
        base = self._constant_rate_log_prob(y)
        rates = self.predict(part, num_samples, seed).mean
        scores = {"bits_per_spike": metrics.bits_per_spike(self._log_prob(rates, y, np.arange(n)), base, y)}
        perm = np.random.default_rng(seed).permutation(n)
        n_out = max(1, int(round(held_out_fraction * n)))
        held_out, held_in = np.sort(perm[:n_out]), np.sort(perm[n_out:])
        co = self.predict(part, num_samples, seed, given=(held_in, y[..., held_in])).mean
        scores["co_smoothing_bits_per_spike"] = metrics.bits_per_spike(
            self._log_prob(co, y[..., held_out], held_out), base[..., held_out], y[..., held_out]
        )
        scores["held_out_units"] = held_out.tolist()
        if self.n_behavior and part.behavior is not None:
            v = np.asarray(part.behavior, dtype=np.float64)
            r2, pred = self._decoded_r2(part, num_samples, seed)
            scale = (self.behavior_likelihood.scale * self.behavior_std_0).detach().cpu().numpy()
            noisy = pred.samples + scale * np.random.default_rng(seed).standard_normal(pred.samples.shape)
            scores.update(
                behavior_r2=float(r2.mean()),
                behavior_r2_per_dim=r2.tolist(),
                behavior_coverage_90=metrics.interval_coverage(noisy, v, 0.9, seed=seed),
            )
        scores["n_trials"] = part.n_trials
        return scores

    # ------------------------------------------------------------------ ArviZ

    @torch.no_grad()
    def to_arviz(
        self, rec: Recording, tier: str | None = "test", num_samples: int = 200, seed: int = 0, session: Any = None
    ):
        """Posterior, posterior predictive and pointwise log-likelihood as ArviZ ``InferenceData``.

        ``posterior``: ``edge_weights`` (chain, draw, edge), with ``source`` and ``target`` unit
        ids as coordinates of ``edge``, and ``behavior_weights`` (chain, draw, neuron, behavior,
        latent); ``posterior_predictive``: ``responses`` (trial, frame, neuron) and ``behavior``
        (trial, frame, behavior) from :meth:`sample`; ``observed_data`` the same;
        ``log_likelihood``: each draw's log density of every spike count given the draw of the
        states from the guide (a smoothing density: the states saw these spikes).
        """
        self.session_index(session)
        import arviz as az

        part = self._part(rec, tier)
        synthetic = self.sample(part, num_samples, seed)
        y = np.asarray(part.responses, dtype=np.float32)
        pointwise = np.empty((num_samples, *y.shape), np.float32)
        readers = {"ll": q.pointwise("responses"), "posterior": q.global_sites(self.query())}
        self.train(False)
        with seeded(seed, self.device):  # one pass: the posterior group and the densities share the draws
            for idx, res in q.run(self.query(), self._engine_chunks(part, num_samples), num_samples, readers):
                pointwise[:, idx] = res["ll"].cpu().numpy()
                draws = res["posterior"]
        ids = np.asarray(self.specs[0].neuron_ids)
        e = self.edge_index.cpu().numpy()
        coords = {
            "neuron": ids,
            "trial": np.asarray(part.trial_index),
            "frame": np.arange(part.n_frames),
            "edge": np.arange(e.shape[1]),
        }
        posterior, dims = posterior_arrays(draws, self.site_dims)
        observed = {"responses": y}
        dims.update(responses=["trial", "frame", "neuron"], behavior=["trial", "frame", "behavior"])
        predictive = {"responses": synthetic["responses"][None]}
        if self.n_behavior:
            observed["behavior"] = np.asarray(part.behavior, dtype=np.float32)
            predictive["behavior"] = synthetic["behavior"][None]
        idata = az.from_dict(
            posterior=posterior,
            posterior_predictive=predictive,
            observed_data=observed,
            log_likelihood={"responses": pointwise[None]},
            coords=coords,
            dims=dims,
            attrs={"twin": type(self).__name__, "session": self.specs[0].name, "tier": str(tier)},
        )
        idata.posterior = idata.posterior.assign_coords(source=("edge", ids[e[0]]), target=("edge", ids[e[1]]))
        return idata
