"""The motor-circuit simulator: its truth is self-consistent and lesion effects behave as defined."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import probtwin as pt
from probtwin.nn.graph import rollout


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.motor(n_units=15, n_trials=40, frames=10, seed=3, edge_prob=0.1)


def test_recording_shapes_and_tiers(sim):
    rec = sim.recording
    assert rec.responses.shape == (40, 10, 15) and rec.behavior.shape == (40, 10, 2)
    assert rec.stimuli.shape == (40, 10, 4) and rec.stimulus_kind == "task"
    assert rec.neuron_coords.shape == (15, 2)
    assert set(rec.tiers) == {"train", "validation", "test"}
    assert np.issubdtype(np.asarray(rec.responses).dtype, np.integer)
    u = np.asarray(rec.stimuli)
    np.testing.assert_array_equal(u[:, :3].argmax(-1), np.repeat(rec.trial_info["target"][:, None], 3, 1))
    assert u[:, 3:].sum() == 0  # the target is on for the first third of the trial


def test_truth_is_the_generative_model(sim):
    t = sim.truth
    e = torch.as_tensor(t["innovations"])
    states = (
        rollout(
            sim.dynamics,
            e[:, 0],
            torch.as_tensor(np.asarray(sim.recording.stimuli)),
            torch.as_tensor(t["edge_index"]),
            torch.as_tensor(t["edge_weight"], dtype=torch.float32),
            e,
        )
        .detach()
        .numpy()
    )
    np.testing.assert_allclose(states, t["states"], atol=1e-5)
    log_rates = np.einsum("btnd,nd->btn", t["states"], t["spike_weights"]) + t["spike_bias"]
    np.testing.assert_allclose(t["rates"], np.exp(np.minimum(log_rates, 4.0)), rtol=1e-5)
    np.testing.assert_allclose(t["velocity"], np.einsum("btnd,nkd->btk", t["states"], t["behavior_weights"]))
    assert np.all(t["behavior_weights"][~t["motor"]] == 0)
    dense = np.zeros((15, 15))
    dense[t["edge_index"][0], t["edge_index"][1]] = t["edge_weight"]
    np.testing.assert_array_equal(dense, t["adjacency"])
    # the observed velocity is the true one plus noise of the stated scale
    resid = np.asarray(sim.recording.behavior) - t["velocity"]
    assert resid.std() == pytest.approx(0.1, rel=0.15)


def test_lesion_effects_follow_the_graph(sim):
    t = sim.truth
    n = 15
    effect = t["lesion_effect"]
    assert effect.shape == (n,) and np.all(effect >= 0)
    # a unit that is not read out and sends no edge changes nothing; a read-out unit does
    senders = set(t["edge_index"][0].tolist())
    silent = [j for j in range(n) if j not in senders and not t["motor"][j]]
    assert silent, "the fixture should hold a unit without outputs"
    np.testing.assert_allclose(effect[silent], 0.0, atol=1e-6)
    assert np.all(effect[t["motor"]] > 0)
    # intact, the rerun reproduces the recorded velocity; effects on chosen trials and statistics
    trials = np.arange(5)
    np.testing.assert_allclose(sim.velocity(trials), t["velocity"][trials], atol=1e-4)
    assert sim.lesion_effect([0, 1], trials, "speed").shape == (2,)


def test_same_seed_same_simulation_and_bad_arguments():
    a = pt.simulate.motor(n_units=5, n_trials=12, frames=4, seed=1)
    b = pt.simulate.motor(n_units=5, n_trials=12, frames=4, seed=1)
    np.testing.assert_array_equal(np.asarray(a.recording.responses), np.asarray(b.recording.responses))
    with pytest.raises(pt.DataError, match="n_units"):
        pt.simulate.motor(n_units=2)
    with pytest.raises(pt.DataError, match="edge_prob"):
        pt.simulate.motor(edge_prob=1.5)
