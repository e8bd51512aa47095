"""MotorGraphTwin figures: decoding and co-smoothing on real motor cortex beside a ridge decoder
fitted in the same run, graph and lesion recovery on the simulator, and the cost of an SVI step
as the population grows on a sparse graph."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr

from probtwin import datasets, metrics
from probtwin.bench.accuracy import print_figures
from probtwin.bench.decoders import gru_decoder, ridge_decoder
from probtwin.bench.speed import _batch, svi_step_time
from probtwin.infer import resolve_device
from probtwin.simulate.motor import motor
from probtwin.twins.motor import DECODING_WEIGHTS, MotorGraphTwin

__all__ = ["run_real", "run_simulation", "step_scaling"]


def run_real(
    monkey: str = "chewie",
    session: int = 0,
    max_epochs: int | None = None,
    time_limit: float | None = 900.0,
    seed: int = 0,
    num_samples: int = 200,
    behavior_weights: Sequence[float] = DECODING_WEIGHTS,
    validation: str = "behavior",
    verbose: bool = True,
    **twin_kwargs,
) -> dict:
    """Decoded velocity R^2 and co-smoothing of a MotorGraphTwin on the DAD monkey data, beside
    the fair decoders (:mod:`probtwin.bench.decoders`) on the same split in the same run.

    Every side sees each window's spikes (all bins) and task inputs, and chooses its
    hyperparameters on the validation tier: the ridge its window and penalty, the GRU its width
    and dropout and its stopping epoch, the twin its ``behavior_weight`` among
    ``behavior_weights`` by validation R^2 (:meth:`MotorGraphTwin.fit_decoder`: one fit each,
    otherwise its defaults). Each twin is stopped by ``validation`` (``"behavior"``: the R^2 of
    its decode on the validation tier, the figure the GRU is stopped by; ``"elbo"``: the twin's
    default). Each fit of either side has ``time_limit`` seconds; ``max_epochs`` None is the
    twin's default.
    """
    rec = datasets.dad_m1(monkey, session)
    ridge = ridge_decoder(rec)
    gru = gru_decoder(rec, seed=seed, time_limit=time_limit)
    fit_options = {"max_epochs": max_epochs, "time_limit": time_limit}
    twin, fits = MotorGraphTwin.fit_decoder(
        rec, behavior_weights, num_samples, seed, fit_options, validation=validation, **twin_kwargs
    )
    weight = twin.config["behavior_weight"]
    chosen = fits[weight]
    scores = twin.evaluate(rec, "test", num_samples=num_samples, seed=seed)
    best_baseline = max(ridge["r2"], gru["r2"])
    out = {
        "data": f"{rec.name}: {rec.n_trials} windows x {rec.n_frames} bins x {rec.n_neurons} units",
        "twin_velocity_r2": scores["behavior_r2"],
        "twin_behavior_weight": weight,
        "twin_validation": twin.config["validation"],
        "twin_validation_r2": chosen["validation_r2"],
        "twin_validation_r2_per_weight": {w: f["validation_r2"] for w, f in fits.items()},
        "ridge_velocity_r2": ridge["r2"],
        "ridge_window": f"{ridge['lags']} lags, {ridge['leads']} leads, alpha {ridge['alpha']:g}",
        "gru_velocity_r2": gru["r2"],
        "gru_setting": f"hidden {gru['hidden']}, dropout {gru['dropout']:g}, {gru['epochs']} epochs",
        "twin_minus_best_baseline_r2": scores["behavior_r2"] - best_baseline,
        "velocity_coverage_90": scores["behavior_coverage_90"],
        "co_smoothing_bits_per_spike": scores["co_smoothing_bits_per_spike"],
        "smoothing_bits_per_spike": scores["bits_per_spike"],
        "held_out_units": len(scores["held_out_units"]),
        "fit_seconds": chosen["seconds"],
        "gru_fit_seconds": gru["fit_seconds"],
        "fit": chosen["stopped"],
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
    edge_prior_scale: float | None = None,
    verbose: bool = True,
) -> dict:
    """Edge recovery (ROC AUC of |posterior mean| against the true graph) and single-unit lesion
    effects (Pearson r and 90% interval coverage against the simulator's truth), with the twin's
    default edge prior unless ``edge_prior_scale`` is given."""
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
