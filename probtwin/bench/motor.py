"""MotorGraphTwin figures: decoding and co-smoothing on real motor cortex beside a ridge decoder
fitted in the same run, graph and lesion recovery on the simulator, and the cost of an SVI step
as the population grows on a sparse graph."""

from __future__ import annotations

import time

import numpy as np
from scipy.stats import pearsonr

from probtwin import datasets, metrics
from probtwin.bench.accuracy import print_figures, ridge_fit
from probtwin.bench.speed import _batch, svi_step_time
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer import resolve_device
from probtwin.simulate.motor import motor
from probtwin.twins.motor import MotorGraphTwin

__all__ = ["lagged_counts", "ridge_decoder", "run_real", "run_simulation", "step_scaling"]

ALPHAS = (1.0, 10.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)


def lagged_counts(responses: np.ndarray, history: int) -> np.ndarray:
    """Each bin's counts and those of the ``history`` bins before it in the same trial (zeros
    before the trial's start): (trials, frames, units) -> (trials, frames, units (history + 1))."""
    y = np.asarray(responses, dtype=np.float64)
    if y.ndim != 3:
        raise DataError("responses", "shape (trials, frames, units)", f"shape {y.shape}")
    if int(history) != history or not 0 <= history < y.shape[1]:
        raise DataError("history", f"an integer in [0, {y.shape[1] - 1}]", repr(history))
    lags = [y]
    for k in range(1, int(history) + 1):
        z = np.zeros_like(y)
        z[:, k:] = y[:, :-k]
        lags.append(z)
    return np.concatenate(lags, axis=-1)


def ridge_decoder(rec: Recording, history: int = 3, alphas: tuple[float, ...] = ALPHAS) -> dict:
    """Ridge regression of behaviour on the same bin's spike counts and ``history`` earlier bins.

    Features are standardised on the train tier; the penalty is chosen by validation R^2 among
    ``alphas``; the model is refitted on the train tier and scored on the test tier.

    Returns
    -------
    dict
        ``r2`` (test, mean over dims), ``r2_per_dim``, ``alpha``, ``validation_r2``,
        ``prediction`` (test trials, frames, dims).
    """
    if rec.behavior is None:
        raise DataError("behavior", "behaviour to decode", "None")

    x = lagged_counts(rec.responses, history)
    x = x.reshape(-1, x.shape[-1])
    y = np.asarray(rec.behavior, dtype=np.float64).reshape(len(x), -1)
    tiers = np.repeat(rec.tiers, rec.n_frames)  # each bin's trial's tier
    train, validation, test = (tiers == t for t in ("train", "validation", "test"))

    def score(observed: np.ndarray, predicted: np.ndarray) -> float:
        return float(metrics.r_squared(observed, predicted).mean())

    alpha, predict = ridge_fit(x, y, train, validation, score, alphas)
    pred = predict(x[test])
    r2 = metrics.r_squared(y[test], pred)
    return {
        "r2": float(r2.mean()),
        "r2_per_dim": r2.tolist(),
        "alpha": alpha,
        "validation_r2": score(y[validation], predict(x[validation])),
        "prediction": pred.reshape(-1, rec.n_frames, y.shape[-1]),
    }


def run_real(
    monkey: str = "chewie",
    session: int = 0,
    latent_dim: int = 2,
    max_epochs: int = 400,
    time_limit: float | None = 900.0,
    seed: int = 0,
    history: int = 3,
    num_samples: int = 200,
    verbose: bool = True,
    **twin_kwargs,
) -> dict:
    """Decoded velocity R^2 and co-smoothing of a MotorGraphTwin on the DAD monkey data, with a
    ridge decoder on the same split in the same run."""
    rec = datasets.dad_m1(monkey, session)
    ridge = ridge_decoder(rec, history)
    twin = MotorGraphTwin(rec, latent_dim=latent_dim, **twin_kwargs)
    start = time.perf_counter()
    history_ = twin.fit(
        max_epochs=max_epochs, batch_size=16, seed=seed, progress=False, time_limit=time_limit, patience=25
    )
    seconds = time.perf_counter() - start
    scores = twin.evaluate(rec, "test", num_samples=num_samples, seed=seed)
    out = {
        "data": f"{rec.name}: {rec.n_trials} windows x {rec.n_frames} bins x {rec.n_neurons} units",
        "twin_velocity_r2": scores["behavior_r2"],
        "ridge_velocity_r2": ridge["r2"],
        "ridge_alpha": ridge["alpha"],
        "twin_minus_ridge_r2": scores["behavior_r2"] - ridge["r2"],
        "velocity_coverage_90": scores["behavior_coverage_90"],
        "co_smoothing_bits_per_spike": scores["co_smoothing_bits_per_spike"],
        "smoothing_bits_per_spike": scores["bits_per_spike"],
        "held_out_units": len(scores["held_out_units"]),
        "fit_seconds": seconds,
        "fit": history_.stopped,
    }
    if verbose:
        print_figures(out)
    out["twin"] = twin
    return out


def run_simulation(
    seed: int = 0,
    n_units: int = 40,
    n_trials: int = 400,
    frames: int = 32,
    max_epochs: int = 400,
    time_limit: float | None = 900.0,
    num_samples: int = 200,
    edge_prior_scale: float = 0.1,
    verbose: bool = True,
) -> dict:
    """Edge recovery (ROC AUC of |posterior mean| against the true graph) and single-unit lesion
    effects (Pearson r and 90% interval coverage against the simulator's truth)."""
    sim = motor(n_units=n_units, n_trials=n_trials, frames=frames, seed=seed)
    twin = MotorGraphTwin(sim.recording, graph="learned", latent_dim=1, edge_prior_scale=edge_prior_scale)
    start = time.perf_counter()
    fit = twin.fit(max_epochs=max_epochs, batch_size=32, seed=seed, progress=False, time_limit=time_limit, patience=25)
    seconds = time.perf_counter() - start
    edges = twin.edges()
    truth = sim.truth["adjacency"][edges["source"].to_numpy(), edges["target"].to_numpy()] != 0
    test = sim.recording.split("test")
    silenced = np.eye(n_units, dtype=bool)
    effect = twin.intervention_effects(test, silenced=silenced, num_samples=num_samples, seed=seed)
    true_effect = sim.truth["lesion_effect"]
    lower, upper = np.quantile(effect, [0.05, 0.95], axis=0)
    scores = twin.evaluate(sim.recording, "test", num_samples=num_samples, seed=seed)
    out = {
        "simulation": f"{n_units} units, {int(truth.sum())} true edges of {len(truth)} pairs, {n_trials} trials",
        "edge_auc": metrics.roc_auc(truth, np.abs(edges["mean"].to_numpy())),
        "lesion_r": float(pearsonr(effect.mean(0), true_effect)[0]),
        "lesion_coverage_90": float(np.mean((true_effect >= lower) & (true_effect <= upper))),
        "velocity_r2": scores["behavior_r2"],
        "co_smoothing_bits_per_spike": scores["co_smoothing_bits_per_spike"],
        "fit_seconds": seconds,
        "fit": fit.stopped,
    }
    if verbose:
        print_figures(out)
    out.update(twin=twin, sim=sim, effect=effect)
    return out


def step_scaling(
    units: tuple[int, ...] = (100, 1000),
    n_neighbors: int = 8,
    batch_size: int = 32,
    frames: int = 16,
    steps: int = 5,
    device: str = "auto",
    verbose: bool = True,
) -> dict:
    """Median seconds of one SVI step on a k-nearest-neighbour graph for each population size, and
    of a learned (all-pairs) graph at the smallest, measured in the same run."""
    dev = resolve_device(device)
    out = {}
    for n in units:
        sim = motor(n_units=n, n_trials=batch_size * 2, frames=frames, seed=0, edge_prob=min(0.5, 4.0 / n))
        kinds = [("knn", {"graph": "knn", "n_neighbors": n_neighbors})]
        if n == min(units):
            kinds.append(("learned", {"graph": "learned"}))
        for name, kwargs in kinds:
            twin = MotorGraphTwin(sim.recording, latent_dim=2, **kwargs).to(dev)
            batch = _batch(twin, batch_size)
            svi_step_time(twin, batch, 2)  # warm-up
            out[f"step_seconds_{name}_{n}_units"] = float(np.median(svi_step_time(twin, batch, steps)))
            out[f"edges_{name}_{n}_units"] = int(twin.edge_index.shape[1])
    small, large = min(units), max(units)
    if large != small:
        out["ratio_knn_large_to_small"] = (
            out[f"step_seconds_knn_{large}_units"] / out[f"step_seconds_knn_{small}_units"]
        )
    out["ratio_learned_to_knn_small"] = (
        out[f"step_seconds_learned_{small}_units"] / out[f"step_seconds_knn_{small}_units"]
    )
    out["device"] = str(dev)
    out["batch"] = f"{batch_size} trials x {frames} frames"
    if verbose:
        print_figures(out)
    return out
