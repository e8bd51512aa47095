import numpy as np
import pytest
import torch

import probtwin as pt
from probtwin.twins.recalibration import shrunk_ratios

SMALL = dict(hidden_channels=8, layers=2, input_kernel=9, hidden_kernel=3, posterior="readout")


def test_shrunk_ratios_pool_and_shrink_each_neurons_ratio_by_its_precision():
    rng = np.random.default_rng(0)
    trials, neurons = 400, 300
    true = rng.normal(3.0, 1.0, neurons)
    noise = np.where(np.arange(neurons) < 150, 0.5, 20.0)  # half the neurons measured precisely
    variance = np.full((trials, neurons), 2.0)
    excess = variance * (true + noise * rng.standard_normal((trials, neurons)))
    out = shrunk_ratios(excess, variance)
    assert out["pooled"] == pytest.approx(true.mean(), abs=0.15)
    assert out["between"] == pytest.approx(1.0, abs=0.3)
    np.testing.assert_allclose(out["standard_error"], noise / np.sqrt(trials), rtol=0.15)
    precise, vague = slice(0, 150), slice(150, None)
    np.testing.assert_allclose(out["shrunk"][precise], out["ratio"][precise], atol=0.02)  # kept
    assert np.mean((out["shrunk"][vague] - true[vague]) ** 2) < 0.7 * np.mean((out["ratio"][vague] - true[vague]) ** 2)
    assert np.std(out["shrunk"][vague]) < 0.6 * np.std(out["ratio"][vague])  # pulled toward the pooled ratio
    one = shrunk_ratios(excess, variance, per_neuron=False)
    np.testing.assert_allclose(one["shrunk"], one["pooled"])


def test_shrunk_ratios_refuse_what_they_cannot_estimate():
    with pytest.raises(pt.DataError, match="excess"):
        shrunk_ratios(np.ones((5, 3)), np.ones((5, 4)))
    one_trial = np.full((5, 3), np.nan)
    one_trial[0] = 1.0
    with pytest.raises(pt.DataError, match="at least 2 trials"):
        shrunk_ratios(one_trial, np.ones((5, 3)))
    with pytest.raises(pt.DataError, match="positive posterior variance"):
        shrunk_ratios(np.ones((5, 3)), np.zeros((5, 3)))


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.v1(n_neurons=20, n_images=800, image_size=(18, 32), seed=3)


@pytest.fixture(scope="module")
def twin(sim):
    twin = pt.ImageTwin(sim.recording, **SMALL)
    twin.fit(max_epochs=12, batch_size=32, lr=0.01, progress=False, seed=0)
    return twin


def _own_predictive(twin, rec, spread, seed):
    """A recording of ``rec``'s trials whose responses the twin itself drew, with its readout
    posterior widened ``spread`` times: trial t from posterior draw t."""
    twin.readouts[0].spread.fill_(spread)
    draws = twin.sample(rec, num_samples=rec.n_trials, seed=seed)
    twin.readouts[0].spread.fill_(1.0)
    y = draws[np.arange(rec.n_trials), np.arange(rec.n_trials)]
    return pt.Recording(
        np.asarray(rec.stimuli),
        y,
        behavior=np.asarray(rec.behavior),
        gaze=np.asarray(rec.gaze),
        tiers=rec.tiers,
        name=rec.name,
    )


@pytest.mark.parametrize("spread, low, high", [(1.0, 1.0, 1.6), (3.0, 2.2, 4.2)])
def test_recalibrate_recovers_the_spread_of_the_posterior_the_data_came_from(twin, sim, spread, low, high):
    # Data drawn from the twin's own posterior predictive, its readout posterior widened `spread`
    # times: a posterior that is right needs no widening, one 3 times too narrow about 3. The
    # bounds allow for the Poisson noise of 800 trials, about 30 times the posterior variance.
    rec = _own_predictive(twin, sim.recording, spread, seed=5)
    out = twin.recalibrate(rec, tier=None, num_samples=200, per_neuron=False)
    np.testing.assert_allclose(out["shrunk"], out["pooled"])  # one ratio of variances for all
    assert low <= np.median(out["spread"]) <= high
    twin.readouts[0].spread.fill_(1.0)


def test_recalibrate_matches_validation_variance_and_widens_test_intervals(twin, sim, tmp_path):
    rec = sim.recording
    test = rec.split("test")
    truth = sim.respond(np.asarray(test.stimuli), np.asarray(test.behavior), np.asarray(test.gaze))
    before = pt.calibration.mean_calibration(twin, test, truth, num_samples=100)
    start = twin.predict(rec.split("validation"), num_samples=100, seed=0).samples.var(0).mean(0)
    out = twin.recalibrate(rec, num_samples=100)
    assert out["spread"].shape == (rec.n_neurons,) and np.all(out["spread"] >= 1.0)
    # the posterior variance matches the goal, where the bisection did not stop at 30 short of it
    at_max = out["spread"] > 29.9
    assert out["pooled"] > 1 and np.all(out["spread"] > 1) and (~at_max).sum() >= 5
    wide = twin.predict(rec.split("validation"), num_samples=100, seed=0).samples.var(0).mean(0)
    goal = out["pooled"] * start
    np.testing.assert_allclose(wide[~at_max], goal[~at_max], rtol=0.05)
    assert np.all(wide[at_max] < goal[at_max])
    after = pt.calibration.mean_calibration(twin, test, truth, num_samples=100)
    assert after.at(0.9) > before.at(0.9) + 0.1
    # every query carries the factors, they are saved, and a new fit starts from 1
    lower, upper = (twin.readout_positions()[key] for key in ("lower", "upper"))
    twin.readouts[0].spread.fill_(1.0)
    narrow = twin.readout_positions()
    assert np.all(upper - lower > narrow["upper"] - narrow["lower"] - 1e-6)
    twin.readouts[0].spread.copy_(torch.as_tensor(out["spread"], dtype=torch.float32))
    back = pt.load(twin.save(tmp_path / "t.pt"))
    np.testing.assert_allclose(back.readouts[0].spread.numpy(), out["spread"], rtol=1e-6)
    twin.fit(max_epochs=1, progress=False)  # the module's twin, last: refitted by one epoch
    assert torch.all(twin.readouts[0].spread == 1.0)


def test_recalibrate_in_chunks_of_trials_gives_the_same_factors(twin, sim, monkeypatch):
    from probtwin.twins import recalibration

    whole = twin.recalibrate(sim.recording, tier=None, num_samples=20, steps=6)
    monkeypatch.setattr(recalibration, "_MAX_VALUES", 20 * 20 * 100)  # chunks of 100 trials
    assert len(recalibration._trial_chunks(sim.recording, 20)) == 8
    chunked = twin.recalibrate(sim.recording, tier=None, num_samples=20, steps=6)
    # the same posterior draws in every chunk, other noise draws: equal up to Monte Carlo error
    assert chunked["pooled"] == pytest.approx(whole["pooled"], rel=0.1)
    assert np.median(chunked["spread"]) == pytest.approx(np.median(whole["spread"]), rel=0.1)
    twin.readouts[0].spread.fill_(1.0)


def test_recalibrate_refuses_a_factor_below_one(twin, sim):
    with pytest.raises(pt.DataError, match="max_spread"):
        twin.recalibrate(sim.recording, max_spread=0.5)
