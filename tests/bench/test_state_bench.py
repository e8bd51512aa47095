"""The classical experiment the twin's state test stands in for: a per-neuron permutation test of
a preferred-orientation change, against tuning curves whose shifts are known."""

from __future__ import annotations

import numpy as np
import pytest

import probtwin as pt
from probtwin.bench.experiments import benjamini_hochberg, orientation_shift_test


def _gratings(seed: int, n_neurons: int = 60, shift_deg: float = 20.0, repeats: int = 10):
    """Von Mises tuning over 12 orientations x 3 phases; every neuron's gain rises 1.5-fold in
    state b, and the first third also shift their preferred orientation by ``shift_deg``."""
    rng = np.random.default_rng(seed)
    theta = np.repeat(np.linspace(0, np.pi, 12, endpoint=False), 3)
    pref = rng.uniform(0, np.pi, n_neurons)
    shifted = np.arange(n_neurons) < n_neurons // 3
    pref_b = pref + np.where(shifted, np.deg2rad(shift_deg), 0.0)

    def rate(p):
        return 1.0 + 6.0 * np.exp(2.0 * (np.cos(2 * (theta[:, None] - p[None])) - 1))

    a = rng.poisson(rate(pref)[:, None].repeat(repeats, 1))
    b = rng.poisson(1.5 * rate(pref_b)[:, None].repeat(repeats, 1))
    return a, b, theta, shifted


def test_orientation_shift_test_finds_shifts_and_not_gain_changes():
    a, b, theta, shifted = _gratings(0)
    shift, p = orientation_shift_test(a, b, theta, permutations=500)
    np.testing.assert_allclose(np.median(shift[shifted]), 20.0, atol=3.0)  # the signed change, b minus a
    assert np.median(np.abs(shift[~shifted])) < 3.0
    found = benjamini_hochberg(p, 0.05)
    assert found[shifted].mean() > 0.8  # power
    assert (found & ~shifted).sum() / max(found.sum(), 1) < 0.15  # realised FDR
    assert 0.2 < np.median(p[~shifted]) < 0.8 and p.min() >= 1 / 501  # a gain change alone is null


def test_orientation_shift_test_p_values_are_uniform_without_any_change():
    rng = np.random.default_rng(1)
    theta = np.repeat(np.linspace(0, np.pi, 12, endpoint=False), 3)
    rate = 2.0 + 3.0 * np.exp(2.0 * (np.cos(2 * (theta[:, None] - rng.uniform(0, np.pi, 200))) - 1))
    a, b = (rng.poisson(rate[:, None].repeat(8, 1)) for _ in range(2))
    _, p = orientation_shift_test(a, b, theta, permutations=200, seed=3)
    assert abs(np.mean(p < 0.1) - 0.1) < 0.06 and abs(np.mean(p) - 0.5) < 0.06
    with pytest.raises(pt.DataError, match="responses"):
        orientation_shift_test(a, b[:, :4], theta)


def test_posterior_targets_are_recomputed_from_the_twin_and_the_truth():
    from probtwin import calibration, experiments
    from probtwin.bench import experiments as bx

    sim = pt.simulate.v1(n_neurons=10, n_images=300, image_size=(20, 28), seed=6, pupil_shift_fraction=0.3)
    small = dict(hidden_channels=6, layers=2, posterior="ensemble", members=2)
    twin = bx.fit_state_twin(sim, time_limit=60, max_epochs=3, **small)
    out = bx.posterior_targets(twin, sim, num_samples=20, seed=2, deltas=(5.0,))
    test = sim.recording.split("test")
    truth = sim.respond(np.asarray(test.stimuli), np.asarray(test.behavior), np.asarray(test.gaze))
    draws = twin.predict(test, num_samples=20, seed=2).samples
    assert out["mean_coverage_90"] == pytest.approx(calibration.calibration(draws, truth, seed=2).at(0.9))
    positions = twin.readout_positions()
    inside = (positions["lower"] <= sim.truth["rf_position"]) & (sim.truth["rf_position"] <= positions["upper"])
    assert out["position_coverage_90"] == pytest.approx(np.all(inside, 1).mean())
    stimuli = experiments.gratings(np.linspace(0, np.pi, 12, endpoint=False), (0.08, 0.12, 0.16), 4, twin=twin)
    band = experiments.tuning_curve(twin, stimuli, num_samples=20).quantile([0.05, 0.95], "sample")
    true = bx.true_tuning(sim, stimuli).transpose(*band.dims[1:]).values
    expected = ((true >= band[0].values) & (true <= band[1].values)).mean()
    assert out["tuning_coverage_90"] == pytest.approx(expected)
    assert 0 <= out["twin_fdr_d5.0"] <= 1 and out["classical_power"] > 0.5 and out["predict_seconds"] > 0


def test_real_calibration_scores_each_posterior_on_held_out_trials():
    from probtwin.bench import experiments as bx

    sim = pt.simulate.v1(n_neurons=8, n_images=200, image_size=(16, 20), seed=7)
    rows = bx.real_calibration(sim.recording, ("readout", "ensemble"), time_limit=2.0, num_samples=10, report=None)
    assert [r["posterior"] for r in rows] == ["readout", "ensemble"]
    for row in rows:
        coverage = [row[f"coverage_{level:g}"] for level in pt.calibration.LEVELS]
        assert np.all(np.diff(coverage) >= 0) and 0 <= coverage[0] and coverage[-1] <= 1
        assert abs(row["coverage_0.9"] - row["coverage_90"]) < 0.1  # the same check, other draws


def small_comparison(posterior, **settings):
    """``run_posterior_comparison`` of one posterior on a small simulation (seed 7): its rows."""
    from probtwin.bench import experiments as bx

    return bx.run_posterior_comparison(
        seeds=(7,), posteriors=(posterior,), n_neurons=8, n_images=300, report=None, **settings
    )


def test_posterior_comparison_scores_a_recalibrated_twin_beside_the_fitted_one():
    fitted, recalibrated = small_comparison("readout", time_limit=3.0, num_samples=20, recalibrate=True)
    assert [fitted["posterior"], recalibrated["posterior"]] == ["readout", "readout+recalibrated"]
    assert recalibrated["fit_seconds"] > fitted["fit_seconds"]
    assert recalibrated["mean_coverage_90"] > fitted["mean_coverage_90"]  # the intervals only widen
    assert recalibrated["position_error_median"] == pytest.approx(fitted["position_error_median"])


def test_posterior_comparison_scores_an_ensemble_as_student_t_and_as_a_mixture_of_the_same_fit():
    student, mixture = small_comparison("ensemble", time_limit=2.0, num_samples=30, mixture=True)
    assert [student["posterior"], mixture["posterior"]] == ["ensemble", "ensemble+mixture"]
    assert student["fit_seconds"] == mixture["fit_seconds"]  # one fit, scored twice
    assert student["position_error_median"] == pytest.approx(mixture["position_error_median"])
    # the t predictive is wider than the members' mixture: its intervals cover more
    assert student["mean_coverage_90"] > mixture["mean_coverage_90"]
    assert student["position_coverage_90"] >= mixture["position_coverage_90"]


def test_the_user_case_fits_the_twin_with_its_defaults_and_tests_at_the_default_delta():
    """``run_default_state_tests``: ``ImageTwin(rec, state_readout=True)`` with the default
    posterior (None) or the one named, its time limit shared by an ensemble's members (which
    then warns), and the state test at the defaults (sign) beside 5 and 10 degrees."""
    from probtwin.bench import experiments as bx

    with pytest.warns(UserWarning, match="stopped at it"):
        rows = bx.run_default_state_tests(
            seeds=(8,), posteriors=(None, "readout"), n_neurons=6, n_images=120, time_limit=1.0, report=None
        )
    assert [r["posterior"] for r in rows] == ["ensemble", "readout"]
    for row in rows:
        assert {"twin_fdr_dNone", "twin_power_dNone", "twin_fdr_d5.0", "twin_fdr_d10.0"} <= set(row)
        assert 0 <= row["twin_fdr_dNone"] <= 1 and row["epochs"] >= 1
        assert row["fit_seconds"] < 60  # the limit bounds the whole fit (checked between epochs)
