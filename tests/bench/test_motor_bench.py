"""The motor twin's baselines: windows of counts, the ridge and GRU decoders, each against a
simulated behaviour whose dependence on the spikes and task inputs is known."""

from __future__ import annotations

import numpy as np
import pytest

import probtwin as pt
from probtwin.bench.decoders import gru_decoder, ridge_decoder, window_counts


def test_window_counts_shift_within_each_trial():
    y = np.arange(2 * 4 * 3).reshape(2, 4, 3)
    x = window_counts(y, 2, 1)
    assert x.shape == (2, 4, 12)
    np.testing.assert_array_equal(x[..., :3], y)
    np.testing.assert_array_equal(x[:, 1:, 3:6], y[:, :-1])  # one bin back
    np.testing.assert_array_equal(x[:, 0, 3:9], 0)  # nothing before the trial's start
    np.testing.assert_array_equal(x[:, 2:, 6:9], y[:, :-2])
    np.testing.assert_array_equal(x[:, :-1, 9:12], y[:, 1:])  # one bin ahead
    np.testing.assert_array_equal(x[:, -1, 9:12], 0)  # nothing after the trial's end
    with pytest.raises(pt.DataError, match="lags"):
        window_counts(y, 4)
    with pytest.raises(pt.DataError, match="leads"):
        window_counts(y, 0, -1)


def _recording(seed: int = 0, n: int = 80):
    """Velocity from the counts one bin back and one ahead, and from a one-hot target."""
    rng = np.random.default_rng(seed)
    spikes = rng.poisson(2.0, size=(n, 10, 8))
    target = np.eye(4)[rng.integers(0, 4, n)][:, None].repeat(10, axis=1)
    coef = rng.normal(size=(8 * 3, 2))
    velocity = window_counts(spikes, 1, 1) @ coef + target @ (3 * rng.normal(size=(4, 2)))
    velocity += 0.05 * rng.normal(size=velocity.shape)
    tiers = pt.data.split_consecutive(n)
    return pt.Recording(target.astype(np.float32), spikes, behavior=velocity, tiers=tiers), velocity, tiers


def test_ridge_decoder_chooses_its_window_on_validation_and_recovers_the_readout():
    rec, velocity, tiers = _recording()
    fair = ridge_decoder(rec, alphas=(1e-3, 1.0))
    assert fair["lags"] >= 1 and fair["leads"] >= 1  # the window the truth needs, chosen on validation
    assert fair["r2"] > 0.999 and fair["prediction"].shape == (int((tiers == "test").sum()), 10, 2)
    causal = ridge_decoder(rec, lags=1, leads=0, alphas=(1e-3, 1.0))
    blind = ridge_decoder(rec, inputs=False, alphas=(1e-3, 1.0))
    assert causal["r2"] < fair["r2"] - 0.05 and blind["r2"] < fair["r2"] - 0.05
    with pytest.raises(pt.DataError, match="behavior"):
        ridge_decoder(pt.Recording(None, rec.responses))


def test_gru_decoder_learns_the_readout_from_spikes_and_inputs():
    rec, velocity, tiers = _recording()
    gru = gru_decoder(rec, hidden=16, dropout=0.0, max_epochs=150, patience=30)
    ridge = ridge_decoder(rec, lags=0, leads=0)  # one bin: misses half the window
    assert gru["r2"] > 0.8 and gru["r2"] > ridge["r2"] + 0.05
    assert gru["prediction"].shape == (int((tiers == "test").sum()), 10, 2) and gru["epochs"] <= 150
    again = gru_decoder(rec, hidden=16, dropout=0.0, max_epochs=150, patience=30)
    np.testing.assert_allclose(again["prediction"], gru["prediction"], rtol=1e-5)  # seeded
    with pytest.raises(pt.DataError, match="tiers"):
        gru_decoder(pt.Recording(rec.stimuli, rec.responses, behavior=velocity, tiers=np.full(80, "train")))


def test_run_real_reports_the_twin_chosen_on_validation_beside_both_decoders(shared_data, monkeypatch):
    from probtwin.bench import motor

    monkeypatch.setenv("PROBTWIN_DATA", str(shared_data))
    out = motor.run_real("chewie", 0, max_epochs=2, time_limit=5.0, num_samples=10, verbose=False)
    rec = pt.datasets.dad_m1("chewie", 0)
    twin = out["twin"]
    assert out["twin_behavior_weight"] == twin.config["behavior_weight"] in pt.twins.motor.DECODING_WEIGHTS
    assert out["twin_validation"] == twin.config["validation"] == "behavior"  # stopped as the GRU is
    valid = twin.evaluate(rec, "validation", num_samples=10, seed=0)["behavior_r2"]
    test = twin.evaluate(rec, "test", num_samples=10, seed=0)["behavior_r2"]
    assert out["twin_validation_r2"] == pytest.approx(valid) and out["twin_velocity_r2"] == pytest.approx(test)
    assert out["ridge_velocity_r2"] == pytest.approx(ridge_decoder(rec)["r2"])  # the same split, fitted here
    best = max(out["ridge_velocity_r2"], out["gru_velocity_r2"])
    assert out["twin_minus_best_baseline_r2"] == pytest.approx(test - best)


def test_run_simulation_scores_the_twin_against_the_simulators_truth():
    from scipy.stats import pearsonr

    from probtwin import metrics
    from probtwin.bench import motor

    out = motor.run_simulation(seed=5, n_units=8, n_trials=40, frames=8, max_epochs=2, num_samples=20, verbose=False)
    sim, twin, effect = out["sim"], out["twin"], out["effect"]
    edges = twin.edges()
    truth = sim.truth["adjacency"][edges["source"].to_numpy(), edges["target"].to_numpy()] != 0
    assert out["edge_auc"] == pytest.approx(metrics.roc_auc(truth, np.abs(edges["mean"].to_numpy())))
    assert effect.shape[1:] == np.shape(sim.truth["lesion_effect"])
    assert out["lesion_r"] == pytest.approx(pearsonr(effect.mean(0), sim.truth["lesion_effect"])[0])
    assert twin.config["edge_prior_scale"] == 0.02  # the default prior, not a tuned one


def test_step_scaling_times_knn_and_learned_graphs():
    from probtwin.bench import motor

    out = motor.step_scaling(units=(10, 20), n_neighbors=3, batch_size=5, frames=4, steps=1, verbose=False)
    assert out["edges_knn_10_units"] == 30 and out["edges_knn_20_units"] == 60  # k edges into each unit
    assert out["edges_learned_10_units"] == 90  # every ordered pair
    ratio = out["step_seconds_knn_20_units"] / out["step_seconds_knn_10_units"]
    assert out["ratio_knn_large_to_small"] == pytest.approx(ratio)
