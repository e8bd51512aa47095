"""The session registry: what a twin records of each recording (its spec and standardisation),
and how it turns recordings and arrays into standardised batches of trials.

``SessionSpec`` is what a twin remembers of a session without its data; ``SessionRegistry`` is
the mixin of every twin that holds, per session ``k``, the buffers ``stim_mean_k``,
``stim_std_k``, ``behavior_mean_k``, ``behavior_std_k``, ``gaze_mean_k``, ``gaze_std_k`` and
``response_mean_k`` (train-tier statistics), and reads trials into batches: dicts of tensors
``session``, ``index``, ``n_total``, ``responses`` (or None), ``stimuli``, ``behavior``,
``gaze``, standardised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from probtwin.data.batching import batch_arrays, joint_steps
from probtwin.data.padding import frame_mask, hold_padding
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer.progress import progress

__all__ = ["SessionRegistry", "SessionSpec", "check_image_specs", "moments", "response_stats"]


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


def check_image_specs(specs: list[SessionSpec], videos: bool = False) -> None:
    """Sessions of images (trials, channels, height, width), or of videos (trials, channels,
    frames, height, width), all with the first one's channels (they share one core)."""
    dims, expected = (
        (4, "videos (trials, channels, frames, height, width) with responses (trials, frames, neurons)")
        if videos
        else (3, "images (trials, channels, height, width)")
    )
    for spec in specs:
        if len(spec.stimulus_shape) != dims:
            raise DataError(f"stimuli of {spec.name!r}", expected, f"trials of shape {tuple(spec.stimulus_shape)}")
        if spec.stimulus_shape[0] != specs[0].stimulus_shape[0]:
            raise DataError(
                f"stimuli of {spec.name!r}",
                f"{specs[0].stimulus_shape[0]} channels like {specs[0].name!r} (one core)",
                f"{spec.stimulus_shape[0]}",
            )


def moments(
    x: Any, axes: tuple[int, ...], chunk: int = 256, lengths: np.ndarray | None = None, frame_axis: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over trials and ``axes``, read in chunks of trials; NaN and,
    given each trial's ``lengths``, the frames after them (along ``frame_axis``: the padding of
    trials of unequal length) left out."""
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, len(x), chunk):
        block = np.asarray(x[start : start + chunk], dtype=np.float64)
        recorded = ~np.isnan(block)
        if lengths is not None:
            shape = [1] * block.ndim
            shape[0], shape[frame_axis] = len(block), block.shape[frame_axis]
            recorded &= frame_mask(lengths[start : start + chunk], block.shape[frame_axis]).reshape(shape)
        block = np.where(recorded, block, 0.0)
        total = total + block.sum(axis=(0, *axes))
        total_sq = total_sq + (block**2).sum(axis=(0, *axes))
        count = count + recorded.sum(axis=(0, *axes))
    count = np.maximum(count, 1)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean, np.where(std > 1e-8, std, 1.0)


def response_stats(responses: Any, chunk: int = 1024) -> dict[str, np.ndarray]:
    """Per-neuron statistics of responses (trials, [frames,] neurons) that the noise models start
    from; padding frames (NaN, trials of unequal length) left out."""
    mean, std = moments(responses, tuple(range(1, responses.ndim - 1)))
    n = mean.shape[0]
    out = {"mean": mean, "std": std, "min": np.full(n, np.inf), "max": np.full(n, -np.inf)}
    out.update(min_positive=np.full(n, np.inf), zeros=np.zeros(n), positive=np.zeros(n), count=np.zeros(n))
    log_sum, log_sq, log1p_sum, log1p_sq = (np.zeros(n) for _ in range(4))
    integer = True
    for block in responses.chunks(chunk):
        y = np.asarray(block, dtype=np.float64).reshape(-1, n)
        y = y[~np.isnan(y).all(1)]
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


class SessionRegistry:
    """Mixin of a twin (a ``torch.nn.Module`` with ``specs`` and ``recordings``): per-session
    statistics as buffers, and standardised batches of trials."""

    def _register_sessions(self, specs: list[SessionSpec]) -> None:
        """The statistics' buffers of every session, at neutral values."""
        for k, spec in enumerate(specs):
            shape = (spec.stimulus_shape[0],) if spec.stimulus_shape else (1,)
            self.register_buffer(f"stim_mean_{k}", torch.zeros(shape))
            self.register_buffer(f"stim_std_{k}", torch.ones(shape))
            self.register_buffer(f"behavior_mean_{k}", torch.zeros(max(spec.n_behavior, 1)))
            self.register_buffer(f"behavior_std_{k}", torch.ones(max(spec.n_behavior, 1)))
            self.register_buffer(f"gaze_mean_{k}", torch.zeros(2))
            self.register_buffer(f"gaze_std_{k}", torch.ones(2))
            self.register_buffer(f"response_mean_{k}", torch.ones(spec.n_neurons))

    def _standardize_inputs(self, k: int, train: Recording, stats: dict[str, np.ndarray]) -> None:
        """Record session ``k``'s train-tier statistics (``stats``: :func:`response_stats`)."""
        getattr(self, f"response_mean_{k}").copy_(torch.as_tensor(stats["mean"], dtype=torch.float32))
        counts = train.frame_counts if train.padded else None  # a trial's frames only
        if train.stimuli is not None and train.stimulus_kind in ("images", "videos"):
            m, s = moments(train.stimuli, tuple(range(2, train.stimuli.ndim)), lengths=counts, frame_axis=2)
            getattr(self, f"stim_mean_{k}").copy_(torch.as_tensor(m, dtype=torch.float32))
            getattr(self, f"stim_std_{k}").copy_(torch.as_tensor(s, dtype=torch.float32))
        for field in ("behavior", "gaze"):
            values = getattr(train, field)
            if values is not None:
                m, s = moments(values, tuple(range(1, values.ndim - 1)), lengths=counts if values.ndim == 3 else None)
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
        """Standardised tensors of one session's trials. Trials of unequal length (NaN-padded,
        :mod:`probtwin.data.padding`) hold their last frame after their end, and
        ``frame_mask`` (trials, frames) marks the frames of responses to score."""
        spec = self.specs[k]
        lengths = arrays.get("lengths")
        if lengths is None:
            arrays, lengths = hold_padding(arrays)
        stimuli = arrays.get("stimuli")
        if stimuli is not None:
            self._check_stimulus_shape(k, tuple(stimuli.shape[1:]))
        n = len(next(v for v in arrays.values() if v is not None))
        if index is None:  # all the trials given: a plate of n, unscaled
            index, n_total = np.arange(n), n
        batch = {
            "session": k,
            "index": torch.as_tensor(index, device=self.device),
            "n_total": n_total,
            "responses": self._tensor(arrays.get("responses")),
        }
        if lengths is not None:
            batch["lengths"] = torch.as_tensor(lengths, device=self.device)
            if arrays.get("responses") is not None:
                mask = frame_mask(lengths, arrays["responses"].shape[1])
                batch["frame_mask"] = torch.as_tensor(mask, device=self.device)
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

    def _check_stimulus_shape(self, k: int, shape: tuple[int, ...]) -> None:
        """A trial's stimulus shape must be the session's."""
        if list(shape) != list(self.specs[k].stimulus_shape):
            expected = f"trials of shape {tuple(self.specs[k].stimulus_shape)} (the twin's input)"
            raise DataError("stimuli", expected, f"shape {shape}")

    #: Seed of this fit's bootstrap resample of every session's train tier (a member of a
    #: ``posterior="bootstrap"`` twin); None: the train tier as it is.
    _resample_seed: int | None = None

    def _train_tiers(self) -> list[Recording]:
        """Each session's train tier; under :attr:`_resample_seed`, a resample of its trials with
        replacement, of the same size (the same seed, the same resample)."""
        trains = [rec.split("train") for rec in self.recordings]
        if self._resample_seed is None:
            return trains
        rng = np.random.default_rng([self._resample_seed, 7919])
        return [t.subset(rng.integers(0, t.n_trials, t.n_trials)) for t in trains]

    def epoch_batches(self, epoch: int):
        """The steps of an epoch: each a list with one minibatch of every session's train tier
        (:func:`probtwin.data.batching.joint_steps`), so that a step's bound is an unbiased
        estimate of the full data's over all sessions."""
        trains = self._train_tiers()
        for step in joint_steps([t.n_trials for t in trains], self._batch_size, self._seed, epoch):
            yield [
                self._batch(k, batch_arrays(t, idx), idx, t.n_trials) for k, (t, idx) in enumerate(zip(trains, step))
            ]

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

    #: Rank of the behaviour or gaze a query takes for n stimuli: (n, d); a twin that takes
    #: traces per frame for each stimulus, (n, frames, d): 3.
    _condition_ndim = 2

    def _condition(self, field: str, values: Any, n: int) -> np.ndarray | None:
        """Behaviour or gaze for ``n`` stimuli: (n, d), or one row (1, d) or (d,) broadcast (a
        twin with ``_condition_ndim`` 3: (n, frames, d), or one trace (frames, d))."""
        if values is None:
            return None
        rank = self._condition_ndim
        values = np.asarray(values, dtype=np.float32)
        values = values[None] if values.ndim == rank - 1 else values
        if values.ndim != rank or len(values) not in (1, n):
            expected = f"shape ({n}, d) or one row (1, d)" if rank == 2 else f"shape ({n}, frames, d) or one trace"
            raise DataError(field, expected, f"shape {values.shape}")
        if not np.all(np.isfinite(values)):
            raise DataError(field, "finite values", "NaN or infinite values")
        return np.repeat(values, n, axis=0) if len(values) == 1 else values

    def _chunks(self, k: int, stimuli, behavior, gaze, size: int):
        """Standardised batches of ``size`` stimuli at a time (no responses): (slice, batch)."""
        n = len(stimuli)
        for start in progress(range(0, n, size), "query", unit="chunk"):
            sl = slice(start, min(start + size, n))
            arrays = {"stimuli": np.asarray(stimuli[sl], dtype=np.float32)}
            if behavior is not None:
                arrays["behavior"] = np.asarray(behavior[sl], dtype=np.float32)
            if gaze is not None:
                arrays["gaze"] = np.asarray(gaze[sl], dtype=np.float32)
            yield sl, self._batch(k, arrays)

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

    def _given(self, k: int, given: Any, n: int, frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Check ``given=(neuron_index, responses)``: responses (n, len(index)), or (n, frames,
        len(index)) for a time series."""
        if not isinstance(given, (tuple, list)) or len(given) != 2:
            raise DataError("given", "a pair (neuron_index, responses)", type(given).__name__)
        index = self._subset_index(k, given[0], "given[0]")
        observed = np.asarray(given[1], dtype=np.float32)
        shape = (n, len(index)) if frames is None else (n, frames, len(index))
        if observed.shape != shape:
            raise DataError("given[1]", f"responses of shape {shape}", f"shape {observed.shape}")
        if not np.all(np.isfinite(observed)):
            raise DataError("given[1]", "finite responses", "NaN or infinite values")
        return index, observed

    def _check_responses(self, k: int, rec: Recording) -> np.ndarray:
        y = np.asarray(rec.responses, dtype=np.float32)
        if y.shape[-1] != self.specs[k].n_neurons:
            raise DataError("responses", f"{self.specs[k].n_neurons} neurons (the twin's)", f"{y.shape[-1]}")
        return y
