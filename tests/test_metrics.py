import numpy as np
import pytest
from scipy import stats

import probtwin as pt
from probtwin import metrics


def test_correlation_hand_case_and_constant():
    assert metrics.correlation(np.array([1.0, 2, 3]), np.array([2.0, 4, 7])) == pytest.approx(5 / np.sqrt(2 * 38 / 3))
    r = metrics.single_trial_correlation(np.array([[1.0, 1], [2, 1], [3, 1]]), np.array([[1.0, 2], [2, 3], [4, 4]]))
    assert r[0] == pytest.approx(stats.pearsonr([1, 2, 3], [1, 2, 4])[0]) and np.isnan(r[1])


def test_fev_and_feve_hand_case():
    y = np.array([[1.0], [3.0], [5.0], [7.0]])
    ids = np.array([0, 0, 1, 1])
    # noise variance: mean of var(1, 3) = var(5, 7) = 2; total variance 20 / 3
    assert metrics.fev(y, ids)[0] == pytest.approx((20 / 3 - 2) / (20 / 3))
    assert metrics.feve(y, np.array([[3.0], [3], [5], [5]]), ids) == pytest.approx(1.0)  # MSE = noise: all explained
    assert metrics.feve(y, np.array([[2.0], [2], [6], [6]]), ids) == pytest.approx(1 - (1 - 2) / (20 / 3 - 2))
    # a neuron under the FEV threshold is left out of the average
    y2 = np.column_stack([y[:, 0], [0.0, 10.0, 0.5, 9.5]])
    p2 = np.column_stack([[3.0, 3, 5, 5], [5.0, 5, 5, 5]])
    assert metrics.fev(y2, ids)[1] < 0.15
    assert metrics.feve(y2, p2, ids) == pytest.approx(1.0)
    with pytest.raises(pt.DataError, match="repeats"):
        metrics.fev(y, np.arange(4))


def test_correlation_to_average_and_oracle_against_a_loop(rng):
    ids = rng.integers(0, 15, 120)
    y = rng.poisson(3, size=(120, 4)).astype(float) + ids[:, None]
    p = ids[:, None] + rng.normal(size=(120, 4))
    uniq = np.unique(ids)
    my = np.array([y[ids == s].mean(0) for s in uniq])
    mp = np.array([p[ids == s].mean(0) for s in uniq])
    expected = [stats.pearsonr(my[:, i], mp[:, i])[0] for i in range(4)]
    np.testing.assert_allclose(metrics.correlation_to_average(y, p, ids), expected)
    keep = np.array([np.sum(ids == s) >= 2 for s in ids])
    loo = np.array([(y[ids == ids[t]].sum(0) - y[t]) / (np.sum(ids == ids[t]) - 1) for t in np.flatnonzero(keep)])
    expected = [stats.pearsonr(y[keep, i], loo[:, i])[0] for i in range(4)]
    np.testing.assert_allclose(metrics.oracle_correlation(y, ids), expected)


def test_per_frame_responses_are_flattened(rng):
    y = rng.normal(size=(6, 5, 3))
    p = y + rng.normal(size=y.shape)
    np.testing.assert_allclose(
        metrics.single_trial_correlation(y, p), metrics.single_trial_correlation(y.reshape(30, 3), p.reshape(30, 3))
    )
    with pytest.raises(pt.DataError, match="predictions"):
        metrics.single_trial_correlation(y, p[:, :4])


def test_split_half_reliability_of_a_known_signal(rng):
    # signal variance 1, noise variance 4 per trial, 8 repeats: reliability of the 8-repeat mean
    # is 1 / (1 + 4 / 8) = 2/3.
    n_stim, reps, neurons = 400, 8, 30
    signal = rng.normal(size=(n_stim, neurons))
    ids = np.repeat(np.arange(n_stim), reps)
    y = signal[ids] + rng.normal(0, 2, size=(n_stim * reps, neurons))
    r = metrics.split_half_reliability(y, ids, n_splits=5)
    assert np.median(r) == pytest.approx(2 / 3, abs=0.04)


def test_log_likelihood_bits_and_bits_per_spike():
    assert metrics.log_likelihood_bits(np.log([[0.5, 0.25]])) == pytest.approx(-1.5)
    np.testing.assert_allclose(metrics.log_likelihood_bits(np.log([[0.5, 0.25]]), per_neuron=True), [-1, -2])
    spikes = np.array([[1, 3]])
    lp = np.log([[0.5, 0.5]])
    base = np.log([[0.25, 0.25]])
    assert metrics.bits_per_spike(lp, base, spikes) == pytest.approx(2 / 4)
    with pytest.raises(pt.DataError, match="spike"):
        metrics.bits_per_spike(lp, base, np.zeros((1, 2)))


def test_pit_hand_case():
    u = metrics.pit(np.array([[0], [1], [1], [2]]), np.array([1]), seed=0)
    assert 0.25 <= u[0] <= 0.75
    u = metrics.pit(np.array([[0.1], [0.2], [0.3], [0.4]]), np.array([0.25]))
    assert u[0] == pytest.approx(0.5)


@pytest.mark.parametrize("rate", [0.05, 0.5, 3.0, 20.0])
def test_coverage_of_a_calibrated_count_model_is_nominal_at_any_rate(rate):
    rng = np.random.default_rng(1)
    observed = rng.poisson(rate, size=(2000, 10))
    samples = rng.poisson(rate, size=(400, 2000, 10))
    assert metrics.interval_coverage(samples, observed, 0.9) == pytest.approx(0.9, abs=0.01)
    # an overconfident model (a point mass at the rounded rate) covers less than it claims
    point_mass = np.full((400, 2000, 10), int(np.round(rate)))
    assert metrics.interval_coverage(point_mass, observed, 0.9) < 0.88


def test_coverage_of_continuous_models():
    rng = np.random.default_rng(2)
    observed = rng.normal(size=(3000, 5))
    assert metrics.interval_coverage(rng.normal(size=(300, 3000, 5)), observed, 0.9) == pytest.approx(0.9, abs=0.01)
    assert metrics.interval_coverage(0.5 * rng.normal(size=(300, 3000, 5)), observed, 0.9) < 0.65
    lo, hi = np.full(5, -1.6448536), np.full(5, 1.6448536)
    assert metrics.coverage(observed, lo, hi) == pytest.approx(0.9, abs=0.01)
    with pytest.raises(pt.DataError, match="level"):
        metrics.interval_coverage(observed[None], observed, 1.5)


def test_true_mean_reaches_feve_of_one_on_the_simulator():
    sim = pt.simulate.v1(n_neurons=80, n_images=300, repeats=4, gaze_std=0, behavior_gain=0, seed=3)
    rec = sim.recording
    y, mu = np.asarray(rec.responses), sim.truth["mean_response"]
    assert metrics.feve(y, mu, rec.stimulus_ids) == pytest.approx(1.0, abs=0.05)
    # a prediction that explains nothing (each neuron's mean) scores about 0
    flat = np.broadcast_to(y.mean(0), y.shape)
    assert metrics.feve(y, flat, rec.stimulus_ids) == pytest.approx(0.0, abs=0.05)
    # the truth's log-likelihood agrees with scipy's Poisson pmf
    lp = stats.poisson.logpmf(y, mu)
    assert metrics.log_likelihood_bits(lp) * rec.n_neurons * np.log(2) == pytest.approx(
        sim.truth["log_likelihood"].mean()
    )


def test_r_squared_matches_its_definition_per_output():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(10, 8, 2))
    pred = y + rng.normal(scale=0.5, size=y.shape)
    flat_y, flat_p = y.reshape(-1, 2), pred.reshape(-1, 2)
    expected = 1 - ((flat_y - flat_p) ** 2).sum(0) / ((flat_y - flat_y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(metrics.r_squared(y, pred), expected)
    np.testing.assert_allclose(metrics.r_squared(y, y), 1.0)
    np.testing.assert_allclose(metrics.r_squared(y, np.broadcast_to(flat_y.mean(0), y.shape)), 0.0, atol=1e-12)
    with pytest.raises(pt.DataError, match="vary"):
        metrics.r_squared(np.ones((3, 2)), np.zeros((3, 2)))


def test_roc_auc_is_the_mann_whitney_probability():
    labels = np.array([1, 1, 0, 0, 0], bool)
    assert metrics.roc_auc(labels, np.array([0.9, 0.8, 0.1, 0.2, 0.3])) == 1.0
    assert metrics.roc_auc(labels, np.array([0.1, 0.2, 0.9, 0.8, 0.3])) == 0.0
    # one positive below one negative of six pairs; ties count one half
    assert metrics.roc_auc(labels, np.array([0.9, 0.25, 0.1, 0.2, 0.3])) == pytest.approx(5 / 6)
    assert metrics.roc_auc(labels, np.zeros(5)) == 0.5
    with pytest.raises(pt.DataError, match="positives"):
        metrics.roc_auc(np.zeros(3, bool), np.arange(3.0))


def test_behavior_effect_rms_and_speed():
    intact = np.zeros((2, 3, 2))
    intact[..., 0] = 1.0  # speed 1 everywhere
    altered = intact.copy()
    altered[..., 0] = 0.5  # half the speed
    assert metrics.behavior_effect(intact, altered, "rms") == pytest.approx(np.sqrt(0.25 / 2))
    assert metrics.behavior_effect(intact, altered, "speed") == pytest.approx(-0.5)
    many = np.stack([intact, altered])  # (interventions, trials, frames, dims) against one intact run
    np.testing.assert_allclose(metrics.behavior_effect(intact, many, "rms"), [0.0, np.sqrt(0.125)])
    with pytest.raises(pt.DataError, match="statistic"):
        metrics.behavior_effect(intact, altered, "peak")
    with pytest.raises(pt.DataError, match="altered"):
        metrics.behavior_effect(intact, altered[:, :2])
