"""Correlated variability: latent-state twins beside independent-noise twins fitted in the same run,
against the simulator's true model, on real V4 counts, and the cost of a step as populations grow."""

from __future__ import annotations

import time

import numpy as np
import torch

from probtwin import datasets
from probtwin.bench.speed import _batch, svi_step_time
from probtwin.data.recording import Recording
from probtwin.data.splits import split_by_repeat
from probtwin.errors import DataError
from probtwin.infer import resolve_device
from probtwin.metrics import single_trial_correlation
from probtwin.simulate import v1
from probtwin.simulate.v1 import Simulation
from probtwin.twins.image import ImageTwin

__all__ = [
    "canonical_correlations",
    "flow_given_true_mean",
    "oracle_scores",
    "run_count_noise",
    "run_flow_noise",
    "run_video_noise",
    "step_scaling",
]

_LN2 = np.log(2)


def canonical_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Canonical correlations of two sets of variables (trials, k_a) and (trials, k_b), descending."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    qa, _ = np.linalg.qr(a)
    qb, _ = np.linalg.qr(b)
    return np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)


def _noise_correlation_match(twin: ImageTwin, truth: dict) -> float:
    """Pearson r, over all neuron pairs, of the twin's and the true noise correlations (Gaussian space)."""
    c, psi = truth["latent_loadings"], truth["private_variance"]
    cov = c @ c.T + np.diag(psi)
    sd = np.sqrt(np.diag(cov))
    true = cov / sd[:, None] / sd[None, :]
    model = twin.noise_correlations()
    upper = np.triu_indices(len(true), 1)
    return float(np.corrcoef(true[upper], model[upper])[0, 1])


def _held_out_repeats(rec: Recording) -> Recording:
    """The same trials, tiered by :func:`probtwin.data.split_by_repeat`."""
    return Recording(
        rec.stimuli,
        rec.responses,
        behavior=rec.behavior,
        gaze=rec.gaze,
        neuron_coords=rec.neuron_coords,
        neuron_area=rec.neuron_area,
        neuron_ids=rec.neuron_ids,
        tiers=split_by_repeat(rec.stimulus_ids),
        stimulus_ids=rec.stimulus_ids,
        name=rec.name,
    )


def run_flow_noise(
    n_neurons: int = 200,
    n_images: int = 400,
    repeats: int = 10,
    rank: int = 3,
    seed: int = 0,
    max_epochs: int = 100,
    time_limit: float = 400.0,
    hidden_channels: int = 16,
    noise_scale: float = 5.0,
    split: str = "repeat",
    image_size: tuple[int, int] = (36, 64),
    fits: tuple[str, ...] = ("flow", "flow_rank0", "independent_normal"),
    noise_only: bool = True,
    progress: bool = False,
) -> dict[str, float]:
    """Fit a flow twin, an independent flow (rank 0) and an independent Gaussian twin to a simulated
    latent-state flow population; report held-out bits per neuron per trial beside the true model's,
    the noise-correlation match and the canonical correlations of the latent state.

    ``noise_scale=5`` gives a noise variance of 0.5 in ``log(1 + y)``, half of it shared, about the
    size of the stimulus-driven variance there (single-trial responses of sensory neurons are that
    variable).

    ``split="repeat"`` holds out the last two presentations of every image
    (:func:`probtwin.data.split_by_repeat`: new trials of images seen in training, the protocol
    of noise models); ``"stimulus"`` holds out whole images (the default split), where the error
    of the predicted mean on new images adds to the gap. ``noise_only`` adds
    :func:`flow_given_true_mean` on the same population."""
    sim = v1(
        n_neurons=n_neurons,
        n_images=n_images,
        repeats=repeats,
        seed=seed,
        likelihood="lognormal",
        correlated_noise_rank=rank,
        noise_scale=noise_scale,
        image_size=image_size,
    )
    rec = _held_out_repeats(sim.recording) if split == "repeat" else sim.recording
    test = rec.split("test")
    n_values = test.n_trials * n_neurons
    out = {"true_bits": float(sim.truth["log_likelihood"][test.trial_index].sum() / n_values / _LN2)}
    all_fits = {
        "flow": dict(noise="flow", latent_rank=rank),
        "flow_rank0": dict(noise="flow", latent_rank=0),
        "independent_normal": dict(noise="independent", likelihood="normal"),
    }
    for name, options in {name: all_fits[name] for name in fits}.items():
        start = time.perf_counter()
        twin = ImageTwin(rec, hidden_channels=hidden_channels, seed=seed, posterior="readout", **options)
        twin.fit(max_epochs=max_epochs, time_limit=time_limit, progress=progress, seed=seed)
        scores = twin.evaluate(rec, "test")
        out[f"{name}_bits"] = scores["log_likelihood_bits"]
        out[f"{name}_correlation_to_average"] = scores.get("correlation_to_average", np.nan)
        out[f"{name}_conditional_correlation"] = scores.get("conditional_correlation", np.nan)
        out[f"{name}_single_trial_correlation"] = scores["single_trial_correlation"]
        out[f"{name}_coverage_90"] = scores["coverage_90"]
        out[f"{name}_minutes"] = (time.perf_counter() - start) / 60
        out[f"{name}_epochs"] = len(twin.history)
        if name == "flow":
            out["noise_correlation_r"] = _noise_correlation_match(twin, sim.truth)
            state = twin.latent_state(rec, "test")["mean"]
            cc = canonical_correlations(state, sim.truth["latent_state"][test.trial_index])
            out["latent_first_canonical_correlation"] = float(cc[0])
            out["latent_last_canonical_correlation"] = float(cc[-1])
    if noise_only:
        out.update(flow_given_true_mean(sim, split=split))
    if "flow" in fits:
        out["flow_gap_to_truth_bits"] = out["true_bits"] - out["flow_bits"]
        for other in fits[1:]:
            out[f"flow_gain_over_{other}_bits"] = out["flow_bits"] - out[f"{other}_bits"]
    return out


def flow_given_true_mean(
    sim: Simulation, steps: int = 1500, lr: float = 0.02, split: str = "repeat"
) -> dict[str, float]:
    """The noise model alone: a :class:`~probtwin.twins.noise.FlowNoise` whose location is a learned
    affine map, per neuron, of ``log(1 + true mean)``, fitted (full batch, Adam) on the train trials
    of a simulated latent-state flow population (``likelihood="lognormal"``) and scored on its test
    trials beside the true model. This separates the noise model's gap to the truth from the error
    of a predicted mean.
    """
    from probtwin.data.registry import response_stats
    from probtwin.twins.noise import FlowNoise

    rank = sim.config["correlated_noise_rank"]
    rec = _held_out_repeats(sim.recording) if split == "repeat" else sim.recording
    y = torch.as_tensor(np.asarray(rec.responses), dtype=torch.float64)
    feature = torch.as_tensor(np.log1p(sim.truth["mean_response"]), dtype=torch.float64)
    train = torch.as_tensor(rec.tiers == "train")
    test = torch.as_tensor(rec.tiers == "test")
    noise = FlowNoise(rec.n_neurons, rank)
    noise.initialize(response_stats(rec.split("train").responses), "responses")
    noise.double()
    scale = torch.ones(rec.n_neurons, dtype=torch.float64, requires_grad=True)
    offset = torch.zeros(rec.n_neurons, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        start = noise.location_of(torch.as_tensor(sim.truth["mean_response"][np.asarray(train)].mean(0)))
        offset.copy_(start - feature[train].mean(0))
    optimizer = torch.optim.Adam([*noise.parameters(), scale, offset], lr=lr)
    for _ in range(steps):
        loss = -noise.log_prob(feature[train] * scale + offset, y[train]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        lp = noise.log_prob(feature[test] * scale + offset, y[test])
    n_values = int(test.sum()) * rec.n_neurons
    true = sim.truth["log_likelihood"][np.asarray(test)].sum() / n_values / _LN2
    fitted = float(lp.sum()) / n_values / _LN2
    return {"noise_model_bits": fitted, "noise_model_gap_bits": float(true) - fitted}


def oracle_scores(rec: Recording) -> dict[str, float]:
    """A no-model reference on repeated counts: each test trial scored by independent Poisson with
    the mean of the same image's other (non-test) presentations as the rate, bits per neuron per
    trial."""
    y = np.asarray(rec.responses, dtype=np.float64)
    ids = rec.stimulus_ids
    test = rec.tiers == "test"
    unique, inverse = np.unique(ids, return_inverse=True)
    sums = np.zeros((len(unique), y.shape[1]))
    np.add.at(sums, inverse[~test], y[~test])
    counts = np.bincount(inverse[~test], minlength=len(unique))
    if np.any(counts[inverse[test]] == 0):
        raise DataError("tiers", "test trials of images also shown outside the test tier", "an image only in test")
    rate = np.maximum(sums[inverse[test]] / counts[inverse[test], None], 1e-3)
    lp = torch.distributions.Poisson(torch.as_tensor(rate)).log_prob(torch.as_tensor(y[test])).numpy()
    return {"oracle_poisson_bits": float(lp.mean() / _LN2), "test_trials": int(test.sum())}


def run_count_noise(
    session: str = "210325",
    rank: int = 3,
    seed: int = 0,
    max_epochs: int = 200,
    time_limit: float = 480.0,
    hidden_channels: int = 16,
    num_samples: int = 100,
    progress: bool = False,
) -> dict[str, float]:
    """V4 spike counts (every repeat a trial, the last presentation of each image held out): the
    latent-state count twin beside the independent Poisson twin, both fitted here, and the oracle
    reference; held-out bits per neuron per trial and conditional correlation."""
    rec = _held_out_repeats(datasets.cowley_v4(session, trials="raw", image_size=56))
    out: dict[str, float] = dict(oracle_scores(rec))
    for name, options in {
        "latent": dict(noise="latent", latent_rank=rank),
        "independent": dict(noise="independent"),
    }.items():
        start = time.perf_counter()
        twin = ImageTwin(
            rec, likelihood="poisson", hidden_channels=hidden_channels, seed=seed, posterior="readout", **options
        )
        twin.fit(max_epochs=max_epochs, time_limit=time_limit, progress=progress, seed=seed)
        scores = twin.evaluate(rec, "test", num_samples=num_samples)
        for key in ("log_likelihood_bits", "log_likelihood_mc_error", "single_trial_correlation", "coverage_90"):
            out[f"{name}_{key}"] = scores[key]
        # independent noise: the prediction given other neurons is the prediction without them
        out[f"{name}_conditional_correlation"] = scores.get(
            "conditional_correlation", scores["single_trial_correlation"]
        )
        out[f"{name}_minutes"] = (time.perf_counter() - start) / 60
        out[f"{name}_epochs"] = len(twin.history)
    out["importance_samples"] = num_samples
    out["gain_bits"] = out["latent_log_likelihood_bits"] - out["independent_log_likelihood_bits"]
    out["gain_conditional_correlation"] = (
        out["latent_conditional_correlation"] - out["independent_conditional_correlation"]
    )
    return out


def run_video_noise(
    model: str = "latent",
    seed: int = 5,
    n_neurons: int = 100,
    n_trials: int = 120,
    n_frames: int = 60,
    rank: int = 2,
    time_limit: float = 600.0,
    num_samples: int = 100,
    rho: float = 0.8,
) -> dict[str, float]:
    """A noise model of the video twin against the one it extends, each fitted with its defaults
    and ``time_limit`` seconds on one simulation (:func:`probtwin.simulate.video`), scored on the
    test frames.

    Parameters
    ----------
    model : {"latent", "ar1"}
        ``"latent"``: Poisson counts sharing a state drawn anew each frame (``noise_scale`` 2);
        latent counts per frame (``latent``) beside independent Poisson noise (``independent``).
        ``"ar1"``: a log-normal flow whose state persists over frames with correlation ``rho``;
        the flow with ``latent_ar1=True`` (``ar1``) beside the flow with a state drawn anew each
        frame (``per_frame``).

    Returns
    -------
    dict
        Per side: held-out bits per neuron per frame, single-trial and conditional correlation
        (half the population predicted from the other half; for independent noise the plain
        prediction), 90% coverage, epochs and minutes; the true model's single-trial correlation
        (``true_model``), that of its mean given the true per-frame state (``true_given_state``,
        the ceiling of a conditional prediction), the true bits where the simulator has them
        (``true_bits``), the first canonical correlation of the twin's posterior state with the
        true one, ``gain_bits``, and with AR(1) the learned ``rho`` of each dimension.
    """
    from probtwin.simulate.video import video
    from probtwin.twins.video import VideoTwin

    if model == "latent":
        options = dict(likelihood="poisson", noise_scale=2.0)
        sides = {"latent": dict(noise="latent", latent_rank=rank), "independent": {}}
    elif model == "ar1":
        options = dict(likelihood="lognormal", latent_ar1=rho)
        flow = dict(noise="flow", latent_rank=rank)
        sides = {"ar1": dict(flow, latent_ar1=True), "per_frame": flow}
    else:
        raise DataError("model", "'latent' or 'ar1'", repr(model))
    sim = video(n_neurons, n_trials, n_frames, seed=seed, correlated_noise_rank=rank, **options)
    rec, truth = sim.recording, sim.truth
    test = rec.split("test")
    y = np.asarray(test.responses)
    c, h = truth["latent_loadings"], truth["latent_state"][test.trial_index]
    if model == "latent":
        mean = truth["mean_response"][test.trial_index]
        given_state = mean * np.exp(h @ c.T - 0.5 * (c**2).sum(-1))
    else:
        z = truth["latent_mean"][test.trial_index] + h @ c.T
        given_state = np.expm1(z + truth["private_variance"] / 2)
    out: dict[str, float] = {
        "simulation": f"{n_neurons} neurons, {n_trials} movies of {n_frames} frames, seed {seed}, {model}",
        "true_model": float(np.nanmean(single_trial_correlation(y, truth["mean_response"][test.trial_index]))),
        "true_given_state": float(np.nanmean(single_trial_correlation(y, given_state))),
    }
    if "log_likelihood" in truth:
        out["true_bits"] = float(truth["log_likelihood"][test.trial_index].sum() / y.size / _LN2)
    for name, settings in sides.items():
        start = time.perf_counter()
        twin = VideoTwin(rec, **settings)
        twin.fit(time_limit=time_limit, progress=False)
        scores = twin.evaluate(rec, "test", num_samples=num_samples)
        for key in ("log_likelihood_bits", "single_trial_correlation", "coverage_90"):
            out[f"{name}_{key}"] = scores[key]
        out[f"{name}_conditional_correlation"] = scores.get(
            "conditional_correlation", scores["single_trial_correlation"]
        )
        out[f"{name}_epochs"] = len(twin.history)
        out[f"{name}_minutes"] = (time.perf_counter() - start) / 60
        if twin.noise[0].rank:
            state = twin.latent_state(rec, "test")["mean"]
            out[f"{name}_state_canonical_correlation"] = float(
                canonical_correlations(state.reshape(-1, rank), h.reshape(-1, rank))[0]
            )
        if settings.get("latent_ar1"):
            out.update({f"ar1_rho_{d}": float(r) for d, r in enumerate(twin.noise[0].rho.detach().cpu())})
    first, second = sides
    out["gain_bits"] = out[f"{first}_log_likelihood_bits"] - out[f"{second}_log_likelihood_bits"]
    return out


def _noise_step_time(rec: Recording, rank: int, batch_size: int, steps: int, device: torch.device) -> float:
    """Median seconds of the flow density's forward and backward pass on one batch."""
    from probtwin.data.registry import response_stats
    from probtwin.twins.noise import FlowNoise

    noise = FlowNoise(rec.n_neurons, rank)
    noise.initialize(response_stats(rec.responses), "responses")
    noise.to(device)
    y = torch.as_tensor(np.asarray(rec.responses[:batch_size]), dtype=torch.float32, device=device)
    loc = noise.flow(y)[0].detach().requires_grad_(True)
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        noise.log_prob(loc, y).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:]))


def step_scaling(
    neurons: tuple[int, ...] = (1000, 10000), rank: int = 8, steps: int = 5, batch_size: int = 64, device: str = "cpu"
) -> dict[str, float]:
    """Median seconds per SVI step of a flow twin (rank ``rank``) and of an independent Gaussian twin
    (the baseline, same data) at each population size, of the flow's density alone (``noise_only``:
    forward and backward of :meth:`FlowNoise.log_prob` on a batch), and each one's growth from the
    smallest size to the largest."""
    out: dict[str, float] = {}
    for n in neurons:
        rec = v1(n_neurons=n, n_images=128, likelihood="lognormal", seed=0).recording
        for name, options in {
            "flow": dict(noise="flow", latent_rank=rank),
            "independent": dict(likelihood="normal"),
        }.items():
            twin = ImageTwin(rec, position_init="uniform", posterior="readout", **options).to(resolve_device(device))
            batch = _batch(twin, batch_size)
            svi_step_time(twin, batch, 2)  # warm-up
            out[f"{name}_{n}"] = float(np.median(svi_step_time(twin, batch, steps)))
        out[f"noise_only_{n}"] = _noise_step_time(rec, rank, batch_size, 20, resolve_device(device))
    for name in ("flow", "independent", "noise_only"):
        out[f"{name}_growth"] = out[f"{name}_{neurons[-1]}"] / out[f"{name}_{neurons[0]}"]
    out["neuron_ratio"] = neurons[-1] / neurons[0]
    return out
