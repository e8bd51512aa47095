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
from probtwin.data.batching import TrialBatches, batch_arrays
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer import FitConfig, History, elbo_terms, resolve_device, run_fit
from probtwin.twins.likelihoods import Likelihood
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


class Twin(nn.Module):
    """Base of every twin. Subclasses implement ``model``, ``guide``, ``_draws`` and ``_mean``.

    Parameters
    ----------
    recordings : Recording or list of Recording
        One recording per session; all share the core.
    likelihood : str
        Observation model (see :mod:`probtwin.twins.likelihoods`).
    config : dict
        The subclass's settings, saved with the twin.
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
        self.likelihoods = nn.ModuleList(Likelihood(likelihood, s.n_neurons) for s in specs)
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
            y_mean, y_std = _moments(train.responses, tuple(range(1, train.responses.ndim - 1)))
            y_min = min(float(np.min(c)) for c in train.responses.chunks(1024))
            y_zero = any(bool(np.any(c == 0)) for c in train.responses.chunks(1024))
            self.likelihoods[k].check(y_min, y_zero, f"responses of {rec.name!r}")
            self.likelihoods[k].init_scale(y_std)
            getattr(self, f"response_mean_{k}").copy_(torch.as_tensor(y_mean, dtype=torch.float32))
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
        batch = {
            "session": k,
            "index": None if index is None else torch.as_tensor(index, device=self.device),
            "n_total": n_total,
            "responses": self._tensor(arrays.get("responses")),
        }
        if stimuli is not None:
            shape = (1, -1) + (1,) * (stimuli.ndim - 2)
            mean = getattr(self, f"stim_mean_{k}").reshape(shape)
            std = getattr(self, f"stim_std_{k}").reshape(shape)
            batch["stimuli"] = (self._tensor(stimuli) - mean) / std
        n = len(next(v for v in arrays.values() if v is not None))
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
        """Minibatches of the train tiers of all sessions, interleaved session by session."""
        per_session = []
        for k, rec in enumerate(self.recordings):
            train = rec.split("train")
            batches = TrialBatches(train.n_trials, self._batch_size, seed=self._seed + 7919 * k)
            per_session.append((k, train, list(batches.epoch(epoch))))
        longest = max(len(b) for _, _, b in per_session)
        for j in range(longest):
            for k, train, batches in per_session:
                if j < len(batches):
                    idx = batches[j]
                    yield self._batch(k, batch_arrays(train, idx), idx, train.n_trials)

    # ------------------------------------------------------------------ inference

    def loss_terms(self, batch: dict):
        return elbo_terms(self.model, self.guide, batch)

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

    def _inputs(self, x: Recording | np.ndarray, session: Any) -> tuple[int, Any, Any, Any]:
        if isinstance(x, Recording):
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
        return k, x, None, None

    def _chunks(self, k: int, stimuli, behavior, gaze, size: int):
        n = len(stimuli)
        for start in range(0, n, size):
            sl = slice(start, min(start + size, n))
            arrays = {"stimuli": np.asarray(stimuli[sl], dtype=np.float32)}
            if behavior is not None:
                arrays["behavior"] = np.asarray(behavior[sl], dtype=np.float32)
            if gaze is not None:
                arrays["gaze"] = np.asarray(gaze[sl], dtype=np.float32)
            yield sl, self._batch(k, arrays)

    @torch.no_grad()
    def _predict_mean(self, x: Recording | np.ndarray, session: Any = None) -> np.ndarray:
        """Mean response under the posterior mean of the per-neuron parameters, (trials, neurons)."""
        k, stimuli, behavior, gaze = self._inputs(x, session)
        return self._mean_responses(k, stimuli, behavior, gaze, self._draws(k, None, None))[0]

    def _mean_responses(self, k: int, stimuli, behavior, gaze, draws: dict) -> np.ndarray:
        """Mean responses under stacked draws, (draws, trials, neurons), in chunks of stimuli
        sized so that the working set stays under ``_MAX_ELEMENTS`` floats."""
        self.train(False)
        n_draws = len(next(iter(draws.values())))
        n_neurons = self.specs[k].n_neurons
        size = max(1, _MAX_ELEMENTS // max(1, n_draws * n_neurons * self._elements_per_neuron(k)))
        out = np.empty((n_draws, len(stimuli), n_neurons), dtype=np.float32)
        for sl, batch in self._chunks(k, stimuli, behavior, gaze, size):
            out[:, sl] = self._mean(batch, draws).cpu().numpy()
        return out

    @torch.no_grad()
    def predict(
        self,
        x: Recording | np.ndarray,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
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

        Returns
        -------
        Prediction
            ``.samples`` (num_samples, trials, neurons), ``.mean``, ``.quantile(q)``.
        """
        self.train(False)
        k, stimuli, behavior, gaze = self._inputs(x, session)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        out = self._mean_responses(k, stimuli, behavior, gaze, self._draws(k, num_samples, generator))
        return Prediction(out, np.asarray(self.specs[k].neuron_ids))

    @torch.no_grad()
    def sample(
        self,
        x: Recording | np.ndarray,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
    ) -> np.ndarray:
        """Posterior predictive responses, observation noise included, (num_samples, trials, neurons)."""
        k, *_ = self._inputs(x, session)
        pred = self.predict(x, num_samples=num_samples, seed=seed, session=session)
        return self._draw_responses(k, pred, seed)

    @torch.no_grad()
    def log_predictive(
        self,
        rec: Recording,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
    ) -> np.ndarray:
        """Pointwise log posterior predictive density ``log mean_s p(y | theta_s)``, (trials, neurons), nats."""
        k, *_ = self._inputs(rec, session)
        pred = self.predict(rec, num_samples=num_samples, seed=seed, session=session)
        return self._log_predictive(k, pred, np.asarray(rec.responses))

    def _draw_responses(self, k: int, pred: Prediction, seed: int) -> np.ndarray:
        mean = torch.as_tensor(pred.samples, device=self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # seeded, and the caller's random state is left alone
            torch.manual_seed(int(seed) + 1)
            return self.likelihoods[k](mean.clamp_min(1e-8)).sample().cpu().numpy()

    def _log_predictive(self, k: int, pred: Prediction, responses: np.ndarray) -> np.ndarray:
        y = torch.as_tensor(responses, dtype=torch.float32, device=self.device)
        lp = self.likelihoods[k](torch.as_tensor(pred.samples, device=self.device).clamp_min(1e-8)).log_prob(y)
        return (torch.logsumexp(lp, 0) - np.log(pred.num_samples)).cpu().numpy()

    def evaluate(
        self, rec: Recording, tier: str = "test", num_samples: int = 100, seed: int = 0, session: Any = None
    ) -> dict[str, float]:
        """Held-out scores (Sensorium 2022 definitions; see :mod:`probtwin.metrics`).

        Returns
        -------
        dict
            ``single_trial_correlation`` (mean over neurons), ``correlation_to_average`` and
            ``feve`` (where stimuli repeat), ``log_likelihood_bits`` (pointwise posterior
            predictive, bits per neuron per trial), ``coverage_90`` (randomized PIT of posterior
            predictive draws), ``n_trials``.
        """
        part = rec.split(tier) if tier is not None else rec
        y = np.asarray(part.responses)
        k, *_ = self._inputs(part, session)
        pred = self.predict(part, num_samples=num_samples, seed=seed, session=session)
        with torch.no_grad():
            draws = self._draw_responses(k, pred, seed)
            lp = self._log_predictive(k, pred, y)
        scores = {
            "single_trial_correlation": float(np.nanmean(metrics.single_trial_correlation(y, pred.mean))),
            "log_likelihood_bits": metrics.log_likelihood_bits(lp),
            "coverage_90": metrics.interval_coverage(draws, y, 0.9, seed=seed),
            "n_trials": part.n_trials,
        }
        if part.has_repeats:
            ids = part.stimulus_ids
            scores["correlation_to_average"] = float(np.nanmean(metrics.correlation_to_average(y, pred.mean, ids)))
            scores["feve"] = metrics.feve(y, pred.mean, ids)
        return scores

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
