"""The video twin beside the field's anchor for movies and beside an image twin run frame by frame,
on a simulation with known truth, each side with the same data and the same fitting budget.

- **VideoTwin** with its defaults.
- **Sensorium 2023 baseline** (Turishcheva et al. 2023), written from its published description
  in plain PyTorch: a factorized 3-D core with a convolutional GRU
  (:class:`probtwin.nn.video_core.FactorizedCore3d`, ``recurrent=True``), a Gaussian readout per
  neuron shared over frames (position sampled while training, its mean at test), a shifter MLP
  of the eye position, behaviour as core channels, point estimates, Poisson loss with the
  Sensorium smoothness and L1 penalties, training on clips with the same burn-in, early stopping
  on the validation tier (:func:`probtwin.bench.anchor.train_point_estimate`). Its core has the
  twin's channels and layers.
- **ImageTwin frame by frame**: each frame an image, its behaviour and gaze those of the frame, its
  response that frame's: everything the video twin sees except the order of the frames.

All three are scored on the same test frames (single-trial correlation over every frame of every
test trial, as the Sensorium 2023 benchmark), beside the true model's figure.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from probtwin import experiments, metrics
from probtwin.bench.anchor import SensoriumBaseline, train_point_estimate
from probtwin.data.batching import batch_arrays, clip_arrays, default_burn_in
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.experiments._pairs import core_history
from probtwin.infer import seeded
from probtwin.nn import Shifter, readout_response
from probtwin.nn.video_core import FactorizedCore3d
from probtwin.simulate.video import temporal_kernel, video
from probtwin.twins.image import ImageTwin
from probtwin.twins.likelihoods import link
from probtwin.twins.video import VideoTwin

__all__ = [
    "SensoriumVideoBaseline",
    "fit_video_anchor",
    "frames_as_images",
    "run_video_comparison",
    "speed",
    "truth_checks",
]


class SensoriumVideoBaseline(SensoriumBaseline):
    """The Sensorium 2023 baseline: factorized 3-D core and ConvGRU, a Gaussian readout shared
    over frames, a shifter; point estimates.

    Shapes
    ------
    videos (batch, channels, frames, H, W), gaze (batch, frames, 2) -> rates (batch, frames, neurons)
    """

    def __init__(self, in_channels: int, n_neurons: int, mean_response: torch.Tensor, core: dict) -> None:
        video_core = FactorizedCore3d(in_channels, **core, recurrent=True)
        super().__init__(in_channels, n_neurons, mean_response, None, core["hidden_channels"], core=video_core)
        self.shifter = Shifter()

    def forward(self, videos: torch.Tensor, gaze: torch.Tensor | None = None) -> torch.Tensor:
        features = self.core.frames(videos)  # (batch * frames, C, H, W)
        shift = None if gaze is None else self.shifter(gaze.flatten(0, 1))
        eta = readout_response(features, self.positions(), self.weights, self.bias, shift)
        return link(eta, "elu", "poisson").unflatten(0, (len(videos), -1))


def _standardizer(rec: Recording) -> dict:
    """Train-tier means and standard deviations of the stimuli (per channel), behaviour and gaze."""
    train = rec.split("train")
    x = np.asarray(train.stimuli, dtype=np.float64)
    out = {"stimuli": (x.mean((0, 2, 3, 4)), x.std((0, 2, 3, 4)) + 1e-8)}
    for field in ("behavior", "gaze"):
        v = getattr(train, field)
        if v is not None:
            v = np.asarray(v, dtype=np.float64).reshape(-1, v.shape[-1])
            out[field] = (v.mean(0), v.std(0) + 1e-8)
    return out


def _inputs(arrays: dict, stats: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Standardised videos with behaviour as extra channels, and standardised gaze."""
    m, s = stats["stimuli"]
    x = (arrays["stimuli"] - m[None, :, None, None, None]) / s[None, :, None, None, None]
    if "behavior" in stats:
        b = (arrays["behavior"] - stats["behavior"][0]) / stats["behavior"][1]
        b = np.broadcast_to(b.transpose(0, 2, 1)[..., None, None], (*b.shape[:1], b.shape[2], *x.shape[2:]))
        x = np.concatenate([x, b], axis=1)
    gaze = None
    if "gaze" in stats:
        gaze = torch.as_tensor((arrays["gaze"] - stats["gaze"][0]) / stats["gaze"][1], dtype=torch.float32)
    return torch.as_tensor(x, dtype=torch.float32), gaze


def _predict(model: SensoriumVideoBaseline, rec: Recording, stats: dict, chunk: int = 8) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, rec.n_trials, chunk):
            x, gaze = _inputs(batch_arrays(rec, np.arange(start, min(start + chunk, rec.n_trials))), stats)
            out.append(model(x, gaze).numpy())
    return np.concatenate(out)


def _correlation(observed: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.nanmean(metrics.single_trial_correlation(observed, predicted)))


def fit_video_anchor(
    rec: Recording,
    core: dict | None = None,
    clip_frames: int = 60,
    burn_in: int | None = None,
    lr: float = 0.005,
    batch_size: int = 8,
    max_epochs: int = 200,
    patience: int = 5,
    lr_decays: int = 3,
    gamma_input: float = 6.3831,
    gamma_readout: float = 0.0076,
    time_limit: float | None = 900.0,
    seed: int = 0,
) -> dict:
    """Train the Sensorium 2023 baseline on clips of the train tier (early stopping on the
    validation tier) and score the test tier. ``burn_in`` unscored frames of each clip, by
    default as the video twin's (:func:`~probtwin.data.batching.default_burn_in` with a history of 12).

    Returns
    -------
    dict
        ``single_trial_correlation`` (test, every frame), ``validation_correlation`` (best),
        ``epochs``, ``fit_seconds``, ``model``.
    """
    if rec.stimulus_kind != "videos":
        raise DataError("stimuli", "videos (trials, channels, frames, height, width)", f"{rec.stimulus_kind}")
    if rec.padded:
        expected = "trials of equal length (the baseline's published loss has no frame mask)"
        raise DataError("responses", expected, "NaN-padded trials")
    core = dict(hidden_channels=16, layers=3) if core is None else core
    stats = _standardizer(rec)
    train, valid, test = (rec.split(t) for t in ("train", "validation", "test"))
    frames = rec.n_frames
    clip = min(clip_frames, frames)
    burn_in = default_burn_in(clip, frames, 12) if burn_in is None else burn_in
    in_channels = rec.stimuli.shape[1] + (rec.behavior.shape[-1] if rec.behavior is not None else 0)
    start = time.perf_counter()
    with seeded(seed):
        mean = torch.as_tensor(np.asarray(train.responses, dtype=np.float32).mean((0, 1)))
        model = SensoriumVideoBaseline(in_channels, rec.n_neurons, mean, core)
        scale = float(np.sqrt(train.n_trials / batch_size))

        def steps(epoch: int):
            rng = np.random.default_rng([seed, epoch])
            for index in np.array_split(rng.permutation(train.n_trials), -(-train.n_trials // batch_size)):
                arrays = clip_arrays(batch_arrays(train, index), clip, rng, burn_in)
                x, gaze = _inputs(arrays, stats)
                yield model(x, gaze)[:, burn_in:], torch.as_tensor(arrays["responses"]), scale

        def validate() -> float:
            return _correlation(np.asarray(valid.responses), _predict(model, valid, stats))

        best, epochs = train_point_estimate(
            model, steps, validate, lr, max_epochs, patience, lr_decays, gamma_input, gamma_readout, time_limit, start
        )
    return {
        "single_trial_correlation": _correlation(np.asarray(test.responses), _predict(model, test, stats)),
        "validation_correlation": best,
        "epochs": epochs,
        "fit_seconds": time.perf_counter() - start,
        "model": model,
    }


def frames_as_images(rec: Recording) -> Recording:
    """Every frame of a video recording as an image trial: stimuli (trials * frames, C, H, W),
    responses, behaviour and gaze of that frame, the tier of its trial (frames after trials)."""
    if rec.stimulus_kind != "videos":
        raise DataError("stimuli", "videos (trials, channels, frames, height, width)", f"{rec.stimulus_kind}")
    frames = rec.n_frames

    def per_frame(values):
        if values is None:
            return None
        v = np.asarray(values)
        return (v if v.ndim == 3 else np.repeat(v[:, None], frames, 1)).reshape(-1, v.shape[-1])

    x = np.asarray(rec.stimuli)
    return Recording(
        x.transpose(0, 2, 1, 3, 4).reshape(-1, x.shape[1], *x.shape[3:]),
        np.asarray(rec.responses).reshape(-1, rec.n_neurons),
        behavior=per_frame(rec.behavior),
        gaze=per_frame(rec.gaze),
        neuron_coords=rec.neuron_coords,
        tiers=np.repeat(np.asarray(rec.tiers), frames),
        name=f"{rec.name}_frames",
    )


def _circular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.angle(np.exp(1j * (a - b))))


def truth_checks(twin: VideoTwin, sim, num_samples: int = 50, frames: int = 30, seed: int = 0) -> dict:
    """A fitted video twin's in-silico experiments against the simulator's answers to the same
    movies.

    - Direction tuning: drifting gratings, 12 directions x 3 spatial x 3 temporal frequencies
      (the simulated range), 2 phases, ``frames`` frames, the steady response (after the
      twin's ``past_frames``). For direction-selective cells (true DSI of the curve above 0.3): the
      median error of the posterior-mean preferred direction; for every neuron: the fraction of
      curve points inside the 90% band, and the correlation of posterior-mean and true curves.
    - Latency: gratings (8 orientations x 3 frequencies x 4 phases) flashed for one frame; the
      frame of the peak of the posterior-mean flash response against the true one.
    - Temporal-kernel latency (:func:`~probtwin.experiments.kernel_latency` at 4 train movies,
      10 draws) against the simulator's kernel latency ``l_i``: the correlation over neurons,
      the median absolute error, the fraction of neurons whose rounded latency is within one
      frame of the kernel's peak frame, the coverage of the 90% intervals, and, for scale, the
      same fraction for a constant guess (the middle of the simulated range).

    Returns
    -------
    dict
        ``direction_error_deg`` (median), ``direction_selective_cells``, ``direction_coverage_90``,
        ``direction_curve_r`` (median over neurons), ``latency_within_1_frame`` (fraction of
        neurons), ``latency_error_frames`` (median absolute), ``kernel_latency_r``,
        ``kernel_latency_error_frames``, ``kernel_latency_within_1_frame``,
        ``kernel_latency_coverage_90``, ``constant_latency_within_1_frame``.
    """
    g = experiments.drifting_gratings(
        np.linspace(0, 2 * np.pi, 12, endpoint=False), (0.08, 0.12, 0.16), (0.05, 0.1, 0.2), 2, frames, twin=twin
    )
    curve = experiments.tuning_curve(twin, g, num_samples=num_samples, seed=seed)
    true = sim.respond(g.images)[:, core_history(twin) :].mean(1)  # (stimuli, neurons), steady as the twin's
    table = g.parameters
    order = table.groupby(["direction", "spatial_frequency", "temporal_frequency"], sort=True).indices
    truth = np.stack([true[rows].mean(0) for rows in order.values()]).reshape(*curve.shape[1:])  # like curve
    truth_da = curve.isel(sample=0, drop=True).copy(data=truth)
    dsi = experiments.direction_selectivity(truth_da).values
    selective = dsi > 0.3
    error = _circular_distance(
        experiments.preferred_direction(curve.mean("sample")).values, experiments.preferred_direction(truth_da).values
    )
    lo, hi = curve.quantile(0.05, "sample").values, curve.quantile(0.95, "sample").values
    mean = curve.mean("sample").values.reshape(-1, truth.shape[-1])
    r = metrics.correlation(mean, truth.reshape(-1, truth.shape[-1]), axis=0)

    flashed = experiments.gratings(np.linspace(0, np.pi, 8, endpoint=False), (0.08, 0.12, 0.16), 4, twin=twin)
    course = experiments.flash_response(twin, flashed, frames=20, num_samples=num_samples, seed=seed)
    true_course = sim.respond(experiments.flashes(flashed, 20).images).mean(0)
    true_course = true_course - true_course[-1]
    twin_latency = np.abs(course.mean("sample").values).argmax(0)
    true_latency = np.abs(true_course).argmax(0)

    movies = np.asarray(sim.recording.split("train").stimuli[:4])
    kernel = experiments.kernel_latency(twin, movies, num_samples=10, seed=seed)
    truth_l = sim.truth["latency"]
    peak_frame = temporal_kernel(truth_l).argmax(1)
    estimate = kernel.mean("sample").values
    k_lo, k_hi = kernel.quantile(0.05, "sample").values, kernel.quantile(0.95, "sample").values
    constant = np.round((truth_l.min() + truth_l.max()) / 2)
    return {
        "kernel_latency_r": float(np.corrcoef(estimate, truth_l)[0, 1]),
        "kernel_latency_error_frames": float(np.median(np.abs(estimate - truth_l))),
        "kernel_latency_within_1_frame": float(np.mean(np.abs(np.round(estimate) - peak_frame) <= 1)),
        "kernel_latency_coverage_90": float(np.mean((truth_l >= k_lo) & (truth_l <= k_hi))),
        "constant_latency_within_1_frame": float(np.mean(np.abs(constant - peak_frame) <= 1)),
        "direction_error_deg": float(np.degrees(np.median(error[selective]))) if selective.any() else float("nan"),
        "direction_selective_cells": int(selective.sum()),
        "direction_coverage_90": float(np.mean((truth >= lo) & (truth <= hi))),
        "direction_curve_r": float(np.nanmedian(r)),
        "latency_within_1_frame": float(np.mean(np.abs(twin_latency - true_latency) <= 1)),
        "latency_error_frames": float(np.median(np.abs(twin_latency - true_latency))),
    }


def run_video_comparison(
    n_neurons: int = 200,
    n_trials: int = 300,
    n_frames: int = 60,
    seed: int = 5,
    time_limit: float = 900.0,
    sides: tuple[str, ...] = ("video_twin", "sensorium_2023", "image_twin_per_frame"),
) -> dict:
    """Fit each side on one simulation (:func:`probtwin.simulate.video`) with ``time_limit``
    seconds each and score the test frames.

    Returns
    -------
    dict
        Per side: ``<side>`` (test single-trial correlation over frames), ``<side>_seconds``,
        ``<side>_epochs``; ``true_model`` (the same figure of the simulator's mean), and for
        the video twin ``video_twin_coverage_90`` and ``video_twin_bits``.
    """
    sim = video(n_neurons=n_neurons, n_trials=n_trials, n_frames=n_frames, seed=seed)
    rec = sim.recording
    test = rec.split("test")
    y = np.asarray(test.responses)
    out: dict = {"simulation": f"{n_neurons} neurons, {n_trials} movies of {n_frames} frames, seed {seed}"}
    out["true_model"] = _correlation(y, sim.truth["mean_response"][test.trial_index])
    for side in sides:
        start = time.perf_counter()
        if side == "video_twin":
            twin = VideoTwin(rec)
            history = twin.fit(time_limit=time_limit, progress=False)
            scores = twin.evaluate(rec, "test")
            out[side], out[f"{side}_epochs"] = scores["single_trial_correlation"], len(history)
            out["video_twin_coverage_90"] = scores["coverage_90"]
            out["video_twin_bits"] = scores["log_likelihood_bits"]
            out.update({f"video_twin_{key}": value for key, value in truth_checks(twin, sim).items()})
        elif side == "sensorium_2023":
            anchor = fit_video_anchor(rec, time_limit=time_limit)
            out[side], out[f"{side}_epochs"] = anchor["single_trial_correlation"], anchor["epochs"]
        elif side == "image_twin_per_frame":
            frames = frames_as_images(rec)
            twin = ImageTwin(frames, posterior="readout")  # one fit, as the video twin's
            history = twin.fit(time_limit=time_limit, progress=False)
            out[side] = twin.evaluate(frames, "test")["single_trial_correlation"]
            out[f"{side}_epochs"] = len(history)
        else:
            raise DataError("sides", "'video_twin', 'sensorium_2023' or 'image_twin_per_frame'", repr(side))
        out[f"{side}_seconds"] = time.perf_counter() - start
    return out


def _saved_bytes(fn) -> tuple[torch.Tensor, int]:
    """``fn()``'s result and the bytes of the tensors autograd saves for its backward pass (the
    activation memory of a training step)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total


def speed(
    clip_lengths: tuple[int, ...] = (15, 30, 60, 120),
    batch_size: int = 8,
    n_neurons: int = 200,
    steps: int = 5,
    num_samples: int = 50,
    seed: int = 0,
) -> list[dict]:
    """A training step's time and activation memory against clip length, for the video twin
    (SVI) and the Sensorium 2023 baseline with the same core (a plain PyTorch step, Poisson
    loss), and the twin's prediction speed in frames per second.

    Returns
    -------
    list of dict
        Per clip length: ``clip_frames``, ``twin_step_s``, ``plain_step_s`` (medians),
        ``ratio``, ``twin_saved_mib``, ``plain_saved_mib``, ``twin_predict_fps`` (frames a
        second of ``predict`` with ``num_samples`` draws over movies of that length).
    """
    from probtwin.bench.speed import _step_times

    sim = video(n_neurons=n_neurons, n_trials=2 * batch_size, n_frames=max(clip_lengths), seed=seed)
    rec = sim.recording
    stats = _standardizer(rec)
    in_channels = rec.stimuli.shape[1] + rec.behavior.shape[-1]
    rows = []
    for clip in clip_lengths:
        burn = min(12, clip // 2)
        twin = VideoTwin(rec, clip_frames=clip, burn_in=burn, seed=seed)
        twin._batch_size, twin._seed = batch_size, seed
        (batch,) = next(iter(twin.epoch_batches(0)))
        _, twin_saved = _saved_bytes(lambda b=batch, t=twin: t.loss_terms([b]).loss)
        twin_times = _step_times(lambda b, t=twin: t.loss_terms([b]).loss, twin, batch, steps + 1)[1:]
        with seeded(seed):
            mean = torch.as_tensor(np.asarray(rec.responses, dtype=np.float32).mean((0, 1)))
            plain = SensoriumVideoBaseline(in_channels, rec.n_neurons, mean, dict(hidden_channels=16, layers=3))
        plain.core.recurrent = None  # the twin's core exactly: no GRU
        arrays = clip_arrays(batch_arrays(rec, np.arange(batch_size)), clip, np.random.default_rng(seed), burn)
        x, gaze = _inputs(arrays, stats)
        y = torch.as_tensor(arrays["responses"])

        def loss(_b, model=plain, x=x, gaze=gaze, y=y, burn=burn):
            rate = model(x, gaze)[:, burn:]
            return (rate - y * torch.log(rate)).sum() + model.core.laplace_penalty()

        _, plain_saved = _saved_bytes(lambda: loss(None))
        plain_times = _step_times(loss, plain, {"responses": y}, steps + 1)[1:]
        movies = np.asarray(rec.stimuli[:batch_size])[:, :, :clip]
        start = time.perf_counter()
        twin.predict(movies, num_samples=num_samples)
        fps = batch_size * clip / (time.perf_counter() - start)
        rows.append(
            {
                "clip_frames": clip,
                "twin_step_s": float(np.median(twin_times)),
                "plain_step_s": float(np.median(plain_times)),
                "ratio": float(np.median(twin_times) / np.median(plain_times)),
                "twin_saved_mib": twin_saved / 2**20,
                "plain_saved_mib": plain_saved / 2**20,
                "twin_predict_fps": fps,
            }
        )
    return rows
