"""The shared twin: data handling, fitting, posterior queries, evaluation, saving and loading.

A twin subclass writes only its generative story and its guide (Pyro sample statements over a
batch) and says how a posterior draw of its per-neuron parameters turns a batch into mean
responses; everything else lives here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from probtwin import metrics
from probtwin.data.batching import batch_arrays, joint_steps
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer import FitConfig, History, elbo_terms, resolve_device, run_fit, seeded
from probtwin.infer import query as q
from probtwin.twins.noise import NoiseModel, make_noise
from probtwin.twins.prediction import Prediction

__all__ = ["SessionSpec", "Twin", "load"]

FORMAT = "probtwin-twin"
_REGISTRY: dict[str, type] = {}
_MAX_ELEMENTS = 2**25  # working-set bound of a prediction chunk (floats)


@dataclass
class SessionSpec:
    """What a twin remembers of a recording: enough to rebuild it without the data."""

    name: str
    n_neurons: int
    neuron_ids: list
    stimulus_shape: list
    n_behavior: int
    has_gaze: bool
    neuron_coords: list | None

    @classmethod
    def of(cls, rec: Recording) -> SessionSpec:
        return cls(
            name=rec.name,
            n_neurons=rec.n_neurons,
            neuron_ids=rec.neuron_ids.tolist(),
            stimulus_shape=list(rec.stimulus_shape or []),
            n_behavior=0 if rec.behavior is None else int(rec.behavior.shape[-1]),
            has_gaze=rec.gaze is not None,
            neuron_coords=None if rec.neuron_coords is None else rec.neuron_coords.tolist(),
        )


def _moments(x: Any, axes: tuple[int, ...], chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over trials and ``axes``, read in chunks of trials."""
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, len(x), chunk):
        block = np.asarray(x[start : start + chunk], dtype=np.float64)
        total = total + block.sum(axis=(0, *axes))
        total_sq = total_sq + (block**2).sum(axis=(0, *axes))
        count += block.size // np.size(total)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean, np.where(std > 1e-8, std, 1.0)


def _response_stats(responses: Any, chunk: int = 1024) -> dict[str, np.ndarray]:
    """Per-neuron statistics of responses (trials, [frames,] neurons) that the noise models start from."""
    mean, std = _moments(responses, tuple(range(1, responses.ndim - 1)))
    n = mean.shape[0]
    out = {"mean": mean, "std": std, "min": np.full(n, np.inf), "max": np.full(n, -np.inf)}
    out.update(min_positive=np.full(n, np.inf), zeros=np.zeros(n), positive=np.zeros(n), count=np.zeros(n))
    log_sum, log_sq, log1p_sum, log1p_sq = (np.zeros(n) for _ in range(4))
    integer = True
    for block in responses.chunks(chunk):
        y = np.asarray(block, dtype=np.float64).reshape(-1, n)
        positive = y > 0
        out["min"] = np.minimum(out["min"], y.min(0))
        out["max"] = np.maximum(out["max"], y.max(0))
        out["min_positive"] = np.minimum(out["min_positive"], np.where(positive, y, np.inf).min(0))
        out["zeros"] += (y == 0).sum(0)
        out["positive"] += positive.sum(0)
        out["count"] += len(y)
        logs = np.log(np.where(positive, y, 1.0))
        log_sum += logs.sum(0)
        log_sq += (logs**2).sum(0)
        logp = np.log1p(np.maximum(y, 0.0))
        log1p_sum += logp.sum(0)
        log1p_sq += (logp**2).sum(0)
        integer = integer and bool(np.all(y == np.round(y)))
    pos = np.maximum(out["positive"], 1)
    out["log_std"] = np.sqrt(np.maximum(log_sq / pos - (log_sum / pos) ** 2, 0.0))
    out["log1p_std"] = np.sqrt(np.maximum(log1p_sq / out["count"] - (log1p_sum / out["count"]) ** 2, 0.0))
    out["integer"] = np.array(integer)
    return out


class Twin(nn.Module):
    """Base of every twin. Subclasses implement ``model``, ``guide``, ``_draws`` and ``_location``.

    Parameters
    ----------
    recordings : Recording or list of Recording
        One recording per session; all share the core.
    likelihood : str
        Observation model (see :mod:`probtwin.twins.likelihoods`; ``"flow"`` for the flows).
    config : dict
        The subclass's settings, saved with the twin; ``noise``, ``latent_rank`` and
        ``dequantize`` choose the noise model (see :mod:`probtwin.twins.noise`).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(
        self,
        recordings: Recording | list[Recording] | None,
        likelihood: str,
        config: dict,
        specs: list[SessionSpec] | None = None,
    ) -> None:
        super().__init__()
        self.recordings = [recordings] if isinstance(recordings, Recording) else list(recordings or [])
        if specs is None:
            if not self.recordings:
                raise DataError("recordings", "at least one Recording", "none")
            for k, rec in enumerate(self.recordings):
                if not isinstance(rec, Recording):
                    raise DataError(f"recordings[{k}]", "a probtwin.Recording", type(rec).__name__)
            names = [r.name for r in self.recordings]
            if len(set(names)) != len(names):
                raise DataError("recordings", "sessions with distinct names", f"{names}")
            specs = [SessionSpec.of(r) for r in self.recordings]
        self.specs = specs
        self.likelihood_name = likelihood
        self.config = dict(config)
        self.noise: list[NoiseModel] = nn.ModuleList(
            make_noise(
                self.config.get("noise", "independent"),
                likelihood,
                s.n_neurons,
                self.config.get("latent_rank", 0),
                s.n_behavior,
                self.config.get("dequantize", False),
            )
            for s in specs
        )
        self.history: History | None = None
        for k, spec in enumerate(specs):
            shape = (spec.stimulus_shape[0],) if spec.stimulus_shape else (1,)
            self.register_buffer(f"stim_mean_{k}", torch.zeros(shape))
            self.register_buffer(f"stim_std_{k}", torch.ones(shape))
            self.register_buffer(f"behavior_mean_{k}", torch.zeros(max(spec.n_behavior, 1)))
            self.register_buffer(f"behavior_std_{k}", torch.ones(max(spec.n_behavior, 1)))
            self.register_buffer(f"gaze_mean_{k}", torch.zeros(2))
            self.register_buffer(f"gaze_std_{k}", torch.ones(2))
            self.register_buffer(f"response_mean_{k}", torch.ones(spec.n_neurons))
        if self.recordings:
            self._standardize()

    # ------------------------------------------------------------------ data

    def _standardize(self) -> None:
        """Record each session's statistics over its train tier and check its responses."""
        for k, rec in enumerate(self.recordings):
            train = rec.split("train")
            stats = _response_stats(train.responses)
            self.noise[k].initialize(stats, f"responses of {rec.name!r}")
            getattr(self, f"response_mean_{k}").copy_(torch.as_tensor(stats["mean"], dtype=torch.float32))
            if rec.stimuli is not None and rec.stimulus_kind in ("images", "videos"):
                axes = tuple(range(2, rec.stimuli.ndim))
                m, s = _moments(train.stimuli, axes)
                getattr(self, f"stim_mean_{k}").copy_(torch.as_tensor(m, dtype=torch.float32))
                getattr(self, f"stim_std_{k}").copy_(torch.as_tensor(s, dtype=torch.float32))
            for field in ("behavior", "gaze"):
                values = getattr(train, field)
                if values is not None:
                    m, s = _moments(values, tuple(range(1, values.ndim - 1)))
                    getattr(self, f"{field}_mean_{k}").copy_(torch.as_tensor(m, dtype=torch.float32))
                    getattr(self, f"{field}_std_{k}").copy_(torch.as_tensor(s, dtype=torch.float32))

    @property
    def device(self) -> torch.device:
        return next(self.buffers()).device

    def session_index(self, session: int | str | Recording | None) -> int:
        """Index of a session given by position, name or recording (its name)."""
        if session is None:
            if len(self.specs) > 1:
                raise DataError("session", f"one of {[s.name for s in self.specs]} (the twin has several)", "None")
            return 0
        if isinstance(session, Recording):
            session = session.name
        if isinstance(session, (int, np.integer)) and 0 <= session < len(self.specs):
            return int(session)
        names = [s.name for s in self.specs]
        if session in names:
            return names.index(session)
        raise DataError("session", f"one of {names}", repr(session))

    def _tensor(self, x: np.ndarray | None) -> torch.Tensor | None:
        return None if x is None else torch.as_tensor(x, dtype=torch.float32, device=self.device)

    def _batch(
        self, k: int, arrays: dict[str, np.ndarray], index: np.ndarray | None = None, n_total: int | None = None
    ) -> dict:
        """Standardised tensors of one session's trials."""
        spec = self.specs[k]
        stimuli = arrays.get("stimuli")
        if stimuli is not None and list(stimuli.shape[1:]) != spec.stimulus_shape:
            raise DataError(
                "stimuli",
                f"trials of shape {tuple(spec.stimulus_shape)} (the twin's input)",
                f"shape {tuple(stimuli.shape[1:])}",
            )
        n = len(next(v for v in arrays.values() if v is not None))
        if index is None:  # all the trials given: a plate of n, unscaled
            index, n_total = np.arange(n), n
        batch = {
            "session": k,
            "index": torch.as_tensor(index, device=self.device),
            "n_total": n_total,
            "responses": self._tensor(arrays.get("responses")),
        }
        if stimuli is not None:
            shape = (1, -1) + (1,) * (stimuli.ndim - 2)
            mean = getattr(self, f"stim_mean_{k}").reshape(shape)
            std = getattr(self, f"stim_std_{k}").reshape(shape)
            batch["stimuli"] = (self._tensor(stimuli) - mean) / std
        for field in ("behavior", "gaze"):
            values = arrays.get(field)
            expected = spec.n_behavior if field == "behavior" else (2 if spec.has_gaze else 0)
            if values is None:  # not given: the average state (zero after standardisation)
                batch[field] = torch.zeros(n, expected, device=self.device) if expected else None
                continue
            if expected == 0 or values.shape[-1] != expected:
                raise DataError(field, f"{expected} features (as the twin was fitted with)", f"{values.shape}")
            batch[field] = (self._tensor(values) - getattr(self, f"{field}_mean_{k}")) / getattr(
                self, f"{field}_std_{k}"
            )
        return batch

    def epoch_batches(self, epoch: int):
        """The steps of an epoch: each a list with one minibatch of every session's train tier
        (:func:`probtwin.data.batching.joint_steps`), so that a step's bound is an unbiased
        estimate of the full data's over all sessions."""
        trains = [rec.split("train") for rec in self.recordings]
        for step in joint_steps([t.n_trials for t in trains], self._batch_size, self._seed, epoch):
            yield [
                self._batch(k, batch_arrays(t, idx), idx, t.n_trials) for k, (t, idx) in enumerate(zip(trains, step))
            ]

    # ------------------------------------------------------------------ inference

    def loss_terms(self, step: list[dict]):
        """The ELBO's terms of a step: the sum of its sessions' minibatch estimates."""
        terms = [self.batch_terms(batch) for batch in step]
        return sum(terms[1:], terms[0])

    def batch_terms(self, batch: dict):
        """The ELBO's terms on one session's batch; the guide and the model share what they
        compute from it (the core's features) within this one evaluation only."""
        return elbo_terms(self.model, self.guide, {k: v for k, v in batch.items() if k != "features"})

    def validation_score(self) -> float:
        """Mean over sessions of the validation correlation of the posterior-mean prediction."""
        scores = []
        for k, rec in enumerate(self.recordings):
            tier = "validation" if np.any(rec.tiers == "validation") else "train"
            part = rec.split(tier)
            mean = self._predict_mean(part, k)
            scores.append(np.nanmean(metrics.single_trial_correlation(np.asarray(part.responses), mean)))
        return float(np.mean(scores))

    def fit(
        self,
        max_epochs: int = 100,
        batch_size: int = 64,
        lr: float = 5e-3,
        device: str | torch.device = "auto",
        seed: int = 0,
        progress: bool = True,
        patience: int = 10,
        checkpoint: str | Path | None = None,
        clip_norm: float = 10.0,
        lr_decay: float = 0.3,
        max_lr_decays: int = 3,
        time_limit: float | None = None,
    ) -> History:
        """Fit the twin by stochastic variational inference on the train tiers.

        Adam with gradient clipping; when the validation correlation has not improved for
        ``patience`` epochs, the best state is restored and the learning rate multiplied by
        ``lr_decay``, at most ``max_lr_decays`` times before the fit stops; the best state is
        kept. With ``checkpoint``, the state is written after every epoch, and a fit started with
        an existing checkpoint resumes from it. ``time_limit`` (seconds) starts no epoch after that
        much fitting time.

        Returns
        -------
        History
            Per epoch: ``elbo``, ``log_likelihood`` (expected, full-data scale), ``kl``,
            ``factor`` (prior terms of point estimates), ``validation``, ``lr``, ``seconds``.
        """
        if not self.recordings:
            raise DataError("recordings", "the data to fit (a loaded twin has none; build a new one)", "none")
        dev = resolve_device(device)
        self.to(dev)
        self._batch_size, self._seed = int(batch_size), int(seed)
        config = FitConfig(
            max_epochs=max_epochs,
            lr=lr,
            clip_norm=clip_norm,
            patience=patience,
            lr_decay=lr_decay,
            max_lr_decays=max_lr_decays,
            seed=seed,
            progress=progress,
            checkpoint=None if checkpoint is None else str(checkpoint),
            time_limit=time_limit,
        )
        self.history = run_fit(self, config, dev)
        return self.history

    # ------------------------------------------------------------------ queries

    def _inputs(
        self, x: Recording | np.ndarray, session: Any, behavior: Any = None, gaze: Any = None
    ) -> tuple[int, Any, Any, Any]:
        if isinstance(x, Recording):
            if behavior is not None or gaze is not None:
                raise DataError("behavior, gaze", "None when x is a Recording (its own are used)", "arrays")
            k = self.session_index(
                session if session is not None else (x.name if x.name in [s.name for s in self.specs] else None)
            )
            return k, x.stimuli, x.behavior, x.gaze
        k = self.session_index(session)
        x = np.asarray(x)
        if x.ndim != len(self.specs[k].stimulus_shape) + 1:
            raise DataError(
                "stimuli", f"shape (n, {', '.join(map(str, self.specs[k].stimulus_shape))})", f"shape {x.shape}"
            )
        return k, x, self._condition("behavior", behavior, len(x)), self._condition("gaze", gaze, len(x))

    @staticmethod
    def _condition(field: str, values: Any, n: int) -> np.ndarray | None:
        """Behaviour or gaze for ``n`` stimuli: (n, d), or one row (1, d) or (d,) broadcast."""
        if values is None:
            return None
        values = np.asarray(values, dtype=np.float32)
        values = values[None] if values.ndim == 1 else values
        if values.ndim != 2 or len(values) not in (1, n):
            raise DataError(field, f"shape ({n}, d) or one row (1, d)", f"shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise DataError(field, "finite values", "NaN or infinite values")
        return np.repeat(values, n, axis=0) if len(values) == 1 else values

    def _chunks(self, k: int, stimuli, behavior, gaze, size: int, responses=None):
        n = len(stimuli)
        for start in range(0, n, size):
            sl = slice(start, min(start + size, n))
            arrays = {"stimuli": np.asarray(stimuli[sl], dtype=np.float32)}
            if responses is not None:
                arrays["responses"] = np.asarray(responses[sl], dtype=np.float32)
            if behavior is not None:
                arrays["behavior"] = np.asarray(behavior[sl], dtype=np.float32)
            if gaze is not None:
                arrays["gaze"] = np.asarray(gaze[sl], dtype=np.float32)
            yield sl, self._batch(k, arrays)

    @torch.no_grad()
    def _predict_mean(self, x: Recording | np.ndarray, session: Any = None) -> np.ndarray:
        """Mean response under the posterior mean of the per-neuron parameters, (trials, neurons)."""
        k, stimuli, behavior, gaze = self._inputs(x, session)
        return self._mean_responses(k, stimuli, behavior, gaze, self._draws(k, None))[0]

    def _locations(self, k: int, stimuli, behavior, gaze, draws: dict, center: bool = False):
        """Locations under stacked draws, chunk by chunk of stimuli sized so that the working set
        stays under ``_MAX_ELEMENTS`` floats.

        Yields
        ------
        (slice, batch, loc (draws, chunk, neurons), center (chunk, neurons) or None): ``center``
        is the location under the posterior mean of the per-neuron parameters.
        """
        self.train(False)
        n_draws = len(next(iter(draws.values())))
        per_trial = n_draws * self.specs[k].n_neurons * (self._elements_per_neuron(k) + self.noise[k].elements)
        mean_draw = self._draws(k, None) if center else None
        for sl, batch in self._chunks(k, stimuli, behavior, gaze, max(1, _MAX_ELEMENTS // max(1, per_trial))):
            loc = self._location(batch, draws)
            yield sl, batch, loc, None if mean_draw is None else self._location(batch, mean_draw)[0]

    def _mean_responses(self, k: int, stimuli, behavior, gaze, draws: dict) -> np.ndarray:
        """Mean responses under stacked draws, (draws, trials, neurons)."""
        n_draws = len(next(iter(draws.values())))
        out = np.empty((n_draws, len(stimuli), self.specs[k].n_neurons), dtype=np.float32)
        for sl, _, loc, _ in self._locations(k, stimuli, behavior, gaze, draws):
            out[:, sl] = self.noise[k].mean(loc).cpu().numpy()
        return out

    def query(self) -> q.Query:
        """The twin as the query engine sees it: its model and guide, one plate over trials per
        session (:mod:`probtwin.infer.query`)."""
        names = {f"trials_{k}" for k in range(len(self.specs))}
        return q.Query(self.model, self.guide, max_plate_nesting=1, data_plates=names)

    def _run(self, k: int, stimuli, behavior, gaze, num_samples: int, readers: dict, responses=None, extra=None):
        """The query engine over chunks of trials sized so that the working set stays under
        ``_MAX_ELEMENTS`` floats: yields (slice, batch, each reader's result on the chunk)."""
        per_trial = num_samples * self.specs[k].n_neurons * (self._elements_per_neuron(k) + self.noise[k].elements)
        size = max(1, _MAX_ELEMENTS // max(1, per_trial))
        seen = []

        def chunks():
            for sl, batch in self._chunks(k, stimuli, behavior, gaze, size, responses):
                seen.append((sl, batch))
                yield ((batch,), *(extra(sl) if extra is not None else ()))

        self.train(False)
        for out in q.run(self.query(), chunks(), num_samples, readers):
            yield *seen[-1], out

    def _mean_of_images(self, k: int, images: torch.Tensor, draws: dict, behavior: np.ndarray | None = None):
        """Mean responses (draws, n, neurons) to raw images (n, C, H, W), differentiable in the
        images (gradients, most exciting inputs); ``behavior`` one row (1, B) or None."""
        self.train(False)
        arrays = {"stimuli": images}
        if behavior is not None:
            arrays["behavior"] = self._condition("behavior", behavior, len(images))
        batch = self._batch(k, arrays)
        return self.noise[k].mean(self._location(batch, draws))

    def _posterior_draws(self, k: int, num_samples: int, seed: int) -> dict:
        with seeded(seed, self.device):
            return self._draws(k, num_samples)

    @torch.no_grad()
    def predict(
        self,
        x: Recording | np.ndarray,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
        given: tuple[np.ndarray, np.ndarray] | None = None,
        behavior: np.ndarray | None = None,
        gaze: np.ndarray | None = None,
    ) -> Prediction:
        """Posterior draws of the mean response to stimuli.

        Parameters
        ----------
        x : Recording or numpy.ndarray
            A recording (its stimuli, behaviour and gaze are used) or stimuli
            (n, channels, height, width) shown at the average behaviour and gaze.
        num_samples : int
            Posterior draws, taken together (vectorised) and in chunks of stimuli so that the
            working memory stays bounded.
        seed : int
            The same seed gives the same numbers, also after saving and loading.
        session : int or str, optional
            Which session's neurons (needed when the twin has several and ``x`` is not one of
            its recordings).
        given : (neuron_index, responses), optional
            Observed responses (n, len(neuron_index)) of some neurons on the same trials: the
            prediction is then of the *other* neurons, conditioned on these through the shared
            latent state (Gaussian conditioning in a flow's Gaussian space, a Laplace
            approximation for counts). A twin with independent noise predicts as without.
        behavior, gaze : numpy.ndarray, shape (n, d) or (1, d), optional
            The state the stimuli are shown in when ``x`` is an array (raw units, as in the
            recording; one row is broadcast over the stimuli). Default: the average state.

        Returns
        -------
        Prediction
            ``.samples`` (num_samples, trials, neurons), ``.mean``, ``.quantile(q)``; with
            ``given``, of the other neurons only (``.neuron_ids`` says which).
        """
        k, stimuli, behavior, gaze = self._inputs(x, session, behavior, gaze)
        ids = np.asarray(self.specs[k].neuron_ids)
        site = f"responses_{k}"
        if given is None:
            out = np.empty((num_samples, len(stimuli), len(ids)), dtype=np.float32)
            with seeded(seed, self.device):
                for sl, _, res in self._run(k, stimuli, behavior, gaze, num_samples, {"mean": q.mean(site)}):
                    out[:, sl] = res["mean"].cpu().numpy()
            return Prediction(out, ids)
        index, observed = self._given(k, given, len(stimuli))
        mask = torch.zeros(len(ids), dtype=torch.bool, device=self.device)
        mask[torch.as_tensor(index, device=self.device)] = True
        others = np.flatnonzero(~mask.cpu().numpy())
        out = np.empty((num_samples, len(stimuli), len(others)), dtype=np.float32)

        def values(sl: slice) -> tuple:
            y = torch.zeros(sl.stop - sl.start, len(ids), device=self.device)
            y[:, torch.as_tensor(index, device=self.device)] = self._tensor(observed[sl])
            return mask, y

        readers = {"mean": q.conditional_mean(site)}
        with seeded(seed, self.device):
            for sl, _, res in self._run(k, stimuli, behavior, gaze, num_samples, readers, extra=values):
                out[:, sl] = res["mean"][..., others].cpu().numpy()
        return Prediction(out, ids[others])

    def _subset_index(self, k: int, index: Any, field: str) -> np.ndarray:
        """Distinct positions of some, not all, of a session's neurons (the others to predict)."""
        n_neurons = self.specs[k].n_neurons
        index = np.asarray(index)
        if index.ndim != 1 or index.dtype.kind not in "iu" or len(index) == 0:
            raise DataError(field, "a 1-d array of neuron indices", f"{index.dtype} array of shape {index.shape}")
        if index.min() < 0 or index.max() >= n_neurons or len(np.unique(index)) != len(index):
            raise DataError(field, f"distinct indices in [0, {n_neurons})", f"{index.tolist()[:10]}")
        if len(index) == n_neurons:
            raise DataError(field, "a subset of the neurons (some left to predict)", "all neurons")
        return index

    def _given(self, k: int, given: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Check ``given=(neuron_index, responses)``."""
        if not isinstance(given, (tuple, list)) or len(given) != 2:
            raise DataError("given", "a pair (neuron_index, responses)", type(given).__name__)
        index = self._subset_index(k, given[0], "given[0]")
        observed = np.asarray(given[1], dtype=np.float32)
        if observed.shape != (n, len(index)):
            raise DataError("given[1]", f"responses of shape {(n, len(index))}", f"shape {observed.shape}")
        if not np.all(np.isfinite(observed)):
            raise DataError("given[1]", "finite responses", "NaN or infinite values")
        return index, observed

    @torch.no_grad()
    def sample(
        self,
        x: Recording | np.ndarray,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
        behavior: np.ndarray | None = None,
        gaze: np.ndarray | None = None,
    ) -> np.ndarray:
        """Posterior predictive responses, observation noise included, (num_samples, trials, neurons).

        Each draw takes a posterior draw of the parameters and then a whole population's response
        per trial: with a latent state, correlated across neurons. ``behavior`` and ``gaze`` as
        in :meth:`predict`.
        """
        k, stimuli, behavior, gaze = self._inputs(x, session, behavior, gaze)
        out = np.empty((num_samples, len(stimuli), self.specs[k].n_neurons), dtype=np.float32)
        with seeded(seed, self.device):
            for sl, _, res in self._run(k, stimuli, behavior, gaze, num_samples, {"draw": q.draw(f"responses_{k}")}):
                out[:, sl] = res["draw"].cpu().numpy()
        return out

    def _check_responses(self, k: int, rec: Recording) -> np.ndarray:
        y = np.asarray(rec.responses, dtype=np.float32)
        if y.shape[-1] != self.specs[k].n_neurons:
            raise DataError("responses", f"{self.specs[k].n_neurons} neurons (the twin's)", f"{y.shape[-1]}")
        return y

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
        n_trials, n_neurons = y.shape
        out = {
            "responses": y,
            "mean": np.empty((n_trials, n_neurons), np.float32),
            "samples": np.empty((num_samples, n_trials, n_neurons), np.float32),
            "log_predictive": np.empty(n_trials),
            "standard_error": np.zeros(n_trials),
        }
        halves = None
        if conditional and noise.rank:
            out["conditional"] = np.empty((n_trials, n_neurons), np.float32)
            perm = np.random.default_rng(seed).permutation(n_neurons)
            first = torch.zeros(n_neurons, dtype=torch.bool, device=self.device)
            first[torch.as_tensor(perm[: n_neurons // 2], device=self.device)] = True
            halves = (first, ~first)
        site = f"responses_{k}"
        readers = {"mean": q.mean(site), "draw": q.draw(site), "fn": q.distribution(site)}
        with seeded(seed, self.device):
            for sl, batch, res in self._run(k, stimuli, behavior, gaze, num_samples, readers):
                center = self._location(batch, self._draws(k, None))[0]
                self._score_chunk(out, sl, batch, res, center, self._tensor(y[sl]), noise, halves)
        return out

    @staticmethod
    def _score_chunk(out: dict, sl: slice, batch: dict, res: dict, center, yt, noise: NoiseModel, halves) -> None:
        """The scores of one chunk of trials (see :meth:`_scores`): the engine's readings
        ``res``, and the noise model's estimator of the log predictive density at its locations."""
        b = batch.get("behavior")
        out["mean"][sl] = res["mean"].mean(0).cpu().numpy()
        out["samples"][:, sl] = res["draw"].cpu().numpy()
        lp, se = noise.log_predictive(res["fn"].loc, yt, center, b)
        out["log_predictive"][sl] = lp.double().cpu().numpy()
        if se is not None:
            out["standard_error"][sl] = se.double().cpu().numpy()
        if halves is not None:
            cond = torch.empty_like(yt)
            for given, target in (halves, halves[::-1]):
                mean, cov = noise.latent_posterior(center, yt, given, b)
                cond[:, target] = noise.conditional_mean(center, mean, cov)[:, target]
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
        n_values = y.shape[0] * y.shape[1]
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

    # ------------------------------------------------------------------ ArviZ

    site_dims: dict[str, tuple[str, ...]] = {}  # names of each posterior site's dimensions

    def _posterior_arrays(self, draws: dict) -> tuple[dict, dict]:
        """Posterior draws (draws, ...) as ArviZ arrays (1, draws, ...) and their dimension names
        (``site_dims``; default: neurons first)."""
        posterior, dims = {}, {}
        for name, value in draws.items():
            value = value.detach().cpu().numpy()[None]
            default = ("neuron", *(f"{name}_dim_{j}" for j in range(value.ndim - 3)))
            posterior[name] = value
            dims[name] = list(self.site_dims.get(name, default))
        return posterior, dims

    @torch.no_grad()
    def to_arviz(
        self, rec: Recording, tier: str | None = "test", num_samples: int = 200, seed: int = 0, session: Any = None
    ):
        """The posterior and its predictions on a recording's trials as ArviZ ``InferenceData``.

        Parameters
        ----------
        rec : Recording
        tier : str or None
            Which trials (None: all).
        num_samples : int
            Posterior draws (one chain).
        seed : int
        session : optional

        Returns
        -------
        arviz.InferenceData
            ``posterior``: the per-neuron sites (``position``, ``weights``, ``bias``, ...), dims
            (chain, draw, neuron, ...), neuron ids as coordinates; ``posterior_predictive`` and
            ``observed_data``: ``responses`` (trial, neuron); ``log_likelihood``: ``responses``,
            each neuron's pointwise log density per draw (chain, draw, trial, neuron), its
            latent state integrated out, so that ``arviz.loo`` scores trial x neuron
            observations. The core and other point estimates are not random and are left out.
        """
        import arviz as az

        part = rec.split(tier) if tier is not None else rec
        k, stimuli, behavior, gaze = self._inputs(part, session)
        y = self._check_responses(k, part)
        site = f"responses_{k}"
        predictive = np.empty((num_samples, *y.shape), np.float32)
        pointwise = np.empty((num_samples, *y.shape), np.float32)
        readers = {"draw": q.draw(site), "fn": q.distribution(site), "posterior": q.global_sites(self.query())}
        with seeded(seed, self.device):
            for sl, _, res in self._run(k, stimuli, behavior, gaze, num_samples, readers):
                predictive[:, sl] = res["draw"].cpu().numpy()
                pointwise[:, sl] = res["fn"].marginal().log_prob(self._tensor(y[sl])).cpu().numpy()
                suffix = f"_{k}"
                draws = {name.removesuffix(suffix): value for name, value in res["posterior"].items()}
        ids = np.asarray(self.specs[k].neuron_ids)
        coords = {"neuron": ids, "trial": np.asarray(part.trial_index)}
        posterior, dims = self._posterior_arrays(draws)
        dims["responses"] = ["trial", "neuron"]
        return az.from_dict(
            posterior=posterior,
            posterior_predictive={"responses": predictive[None]},
            observed_data={"responses": y},
            log_likelihood={"responses": pointwise[None]},
            coords=coords,
            dims=dims,
            attrs={"twin": type(self).__name__, "session": self.specs[k].name, "tier": str(tier)},
        )

    # ------------------------------------------------------------------ the latent state

    def _latent_noise(self, k: int) -> NoiseModel:
        noise = self.noise[k]
        if noise.rank == 0:
            raise DataError(
                "noise",
                "a twin with a latent state (noise='flow', 'zero_inflated_flow' or 'latent' with latent_rank > 0)",
                f"noise={self.config.get('noise', 'independent')!r}, latent_rank={noise.rank}",
            )
        return noise

    @torch.no_grad()
    def latent_state(
        self, rec: Recording, tier: str | None = "test", level: float = 0.9, session: Any = None
    ) -> dict[str, np.ndarray]:
        """Posterior of each trial's latent state ``h_t`` given the population's responses.

        Parameters
        ----------
        rec : Recording
        tier : str or None
            Which trials (None: all).
        level : float
            Central credible interval.

        Returns
        -------
        dict
            ``mean``, ``sd``, ``lower``, ``upper`` (trials, k) and ``trial_index`` (trials,), the
            rows in ``rec``. Flows: the exact Gaussian posterior; latent counts: the amortized
            guide. The latent axes are identified up to a rotation (as in factor analysis).
        """
        if not 0 < level < 1:
            raise DataError("level", "a probability in (0, 1)", repr(level))
        part = rec.split(tier) if tier is not None else rec
        k, stimuli, behavior, gaze = self._inputs(part, session)
        noise = self._latent_noise(k)
        y = self._check_responses(k, part)
        mean = np.empty((len(y), noise.rank))
        sd = np.empty_like(mean)
        draw = self._draws(k, None)
        for sl, batch, loc, _ in self._locations(k, stimuli, behavior, gaze, draw):
            m, cov = noise.latent_posterior(loc[0], self._tensor(y[sl]), None, batch.get("behavior"))
            mean[sl] = m.cpu().numpy()
            sd[sl] = torch.diagonal(cov, dim1=-2, dim2=-1).sqrt().cpu().numpy()
        z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2)))
        return {"mean": mean, "sd": sd, "lower": mean - z * sd, "upper": mean + z * sd, "trial_index": part.trial_index}

    @torch.no_grad()
    def noise_correlations(
        self,
        x: np.ndarray | None = None,
        space: str | None = None,
        num_samples: int = 2000,
        seed: int = 0,
        session: Any = None,
    ) -> np.ndarray:
        """The model's noise correlations, (neurons, neurons), for one stimulus.

        Parameters
        ----------
        x : numpy.ndarray, shape (channels, height, width) or (1, channels, height, width)
            The stimulus (at the average behaviour and gaze); not needed in the latent space of a
            flow, where the covariance does not depend on the stimulus.
        space : {"latent", "response"}, optional
            ``"latent"``: the correlations of ``C C^T + diag(psi)``, the flow's Gaussian space
            (for latent counts, of the log rates, ``C C^T``); ``"response"``: the correlations of
            ``num_samples`` sampled population responses to ``x`` under the posterior-mean
            parameters. Default: ``"latent"`` for the flows, ``"response"`` otherwise.
        """
        k = self.session_index(session)
        noise = self.noise[k]
        space = space or ("latent" if noise.gaussian_space else "response")
        if space not in ("latent", "response"):
            raise DataError("space", "'latent' or 'response'", repr(space))
        if space == "latent":
            if not noise.gaussian_space:
                self._latent_noise(k)
            loadings, private = noise.covariance()
            cov = (loadings @ loadings.T + torch.diag(private)).double()
            sd = torch.sqrt(torch.diagonal(cov)).clamp_min(1e-12)
            return (cov / sd[:, None] / sd[None, :]).cpu().numpy()
        if x is None:
            raise DataError("x", "a stimulus for space='response'", "None")
        if num_samples < 2:
            raise DataError("num_samples", "at least 2 sampled populations", repr(num_samples))
        x = np.asarray(x, dtype=np.float32)
        x = x[None] if x.ndim == len(self.specs[k].stimulus_shape) else x
        if len(x) != 1:
            raise DataError("x", "one stimulus", f"{len(x)}")
        _, stimuli, behavior, gaze = self._inputs(x, k)
        draw = self._draws(k, None)
        sl, batch, loc, _ = next(self._locations(k, stimuli, behavior, gaze, draw))
        with seeded(seed, self.device):
            samples = noise.sample(loc[0].expand(num_samples, -1)).double().cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.corrcoef(samples, rowvar=False)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write configuration and state; :func:`probtwin.load` reads it without running code."""
        path = Path(path)
        payload = {
            "format": FORMAT,
            "version": 1,
            "class": type(self).__name__,
            "likelihood": self.likelihood_name,
            "config": self.config,
            "sessions": [vars(s) for s in self.specs],
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "history": None if self.history is None else self.history.to_dict(),
        }
        torch.save(payload, path)
        return path


def load(path: str | Path, device: str | torch.device = "cpu", **modules: Any) -> Twin:
    """Load a twin saved by :meth:`Twin.save` (weights only: loading never executes code).

    ``modules`` pass back the modules whose code a twin cannot save (``core=`` for a custom core).

    Raises
    ------
    DataError
        When the file is missing or is not a saved twin.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("path", "a file saved by twin.save", f"no file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise DataError("path", "a file saved by twin.save", f"{path} ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("class") not in _REGISTRY:
        raise DataError("path", "a file saved by twin.save", f"{path} (another kind of file)")
    cls = _REGISTRY[payload["class"]]
    specs = [SessionSpec(**s) for s in payload["sessions"]]
    twin = cls._from_specs(specs, payload["likelihood"], payload["config"], **modules)
    twin.load_state_dict(payload["state"])
    if payload.get("history"):
        twin.history = History(**payload["history"])
    twin.to(resolve_device(device))
    twin.train(False)
    return twin
