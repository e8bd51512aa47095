"""The motor benchmark's baseline: lagged counts and the ridge decoder."""

from __future__ import annotations

import numpy as np
import pytest

import probtwin as pt
from probtwin.bench.motor import lagged_counts, ridge_decoder


def test_lagged_counts_shift_within_each_trial():
    y = np.arange(2 * 4 * 3).reshape(2, 4, 3)
    x = lagged_counts(y, 2)
    assert x.shape == (2, 4, 9)
    np.testing.assert_array_equal(x[..., :3], y)
    np.testing.assert_array_equal(x[:, 1:, 3:6], y[:, :-1])  # one bin back
    np.testing.assert_array_equal(x[:, 0, 3:], 0)  # nothing before the trial's start
    np.testing.assert_array_equal(x[:, 2:, 6:9], y[:, :-2])
    with pytest.raises(pt.DataError, match="history"):
        lagged_counts(y, 4)


def test_ridge_decoder_recovers_a_linear_readout_of_lagged_counts():
    rng = np.random.default_rng(0)
    spikes = rng.poisson(2.0, size=(60, 10, 8))
    coef = rng.normal(size=(8 * 2, 2))
    velocity = lagged_counts(spikes, 1) @ coef + 0.01 * rng.normal(size=(60, 10, 2))
    rec = pt.Recording(None, spikes, behavior=velocity, tiers=pt.data.split_consecutive(60))
    exact = ridge_decoder(rec, history=1, alphas=(1e-3, 1.0))
    assert exact["r2"] > 0.999 and exact["prediction"].shape == (6, 10, 2)
    blind = ridge_decoder(rec, history=0)  # without the lag half the signal is missing
    assert blind["r2"] < exact["r2"] - 0.1
    with pytest.raises(pt.DataError, match="behavior"):
        ridge_decoder(pt.Recording(None, spikes), history=1)
