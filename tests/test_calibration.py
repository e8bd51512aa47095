"""Calibration checks against draws whose distribution is known."""

import matplotlib
import numpy as np
import pytest

import probtwin as pt
from probtwin.calibration import LEVELS, calibration, plot_calibration

matplotlib.use("Agg")


def test_draws_from_the_true_distribution_are_calibrated():
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(400, 5))
    truth = loc + rng.normal(size=loc.shape)  # each value from Normal(loc, 1)
    draws = loc + rng.normal(size=(500, *loc.shape))  # and the draws from the same
    cal = calibration(draws, truth)
    np.testing.assert_allclose(cal.coverage, LEVELS, atol=0.03)
    np.testing.assert_allclose(cal.histogram, 1.0, atol=0.2)
    assert cal.pit.shape == truth.shape and abs(cal.at(0.9) - 0.9) < 0.03


def test_too_narrow_draws_undercover_with_a_u_shaped_pit():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=2000)
    draws = 0.3 * rng.normal(size=(300, 2000))  # a third of the true spread
    cal = calibration(draws, truth)
    z = 1.6449 * 0.3  # P(|N(0, 1)| < z): the 90% interval's true coverage
    assert abs(cal.at(0.9) - (2 * __import__("scipy").stats.norm.cdf(z) - 1)) < 0.03
    assert cal.histogram[0] > 2 and cal.histogram[-1] > 2 and cal.histogram[4] < 0.5


def test_counts_are_calibrated_by_the_randomized_pit():
    rng = np.random.default_rng(2)
    rate = rng.gamma(1.0, 1.0, size=3000)
    cal = calibration(rng.poisson(rate, size=(400, 3000)), rng.poisson(rate))
    np.testing.assert_allclose(cal.coverage, LEVELS, atol=0.04)


def test_calibration_refuses_bad_input_and_plots():
    with pytest.raises(pt.DataError, match="levels"):
        calibration(np.zeros((5, 3)), np.zeros(3), levels=(0.5, 1.0))
    with pytest.raises(pt.DataError, match="observed"):
        calibration(np.zeros((5, 3)), np.array([0.0, np.nan, 1.0]))
    with pytest.raises(pt.DataError, match="samples"):
        calibration(np.zeros((5, 4)), np.zeros(3))
    rng = np.random.default_rng(3)
    results = [calibration(rng.normal(size=(50, 100)) * s, rng.normal(size=100), label=f"x{s}") for s in (0.5, 1)]
    fig = plot_calibration(results)
    curve, hist = fig.axes
    assert len(curve.lines) == 3 and len(hist.lines) == 3  # the diagonal and the two; the flat line and the two
    assert "coverage" in repr(results[0])
