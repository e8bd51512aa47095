"""The Sensorium 2022 anchor: it learns a simulated population, stops early on validation, and
its readout positions find the receptive fields."""

from __future__ import annotations

import numpy as np
import pytest

import probtwin as pt
from probtwin.bench.anchor import fit_anchor


def test_the_anchor_learns_a_simulated_population():
    sim = pt.simulate.v1(n_neurons=20, n_images=600, image_size=(18, 32), seed=5)
    rec = sim.recording
    out = fit_anchor(rec, hidden_channels=16, layers=2, max_epochs=100, patience=3, lr_decays=1, time_limit=None)
    test = rec.split("test")
    truth = sim.truth["mean_response"][test.trial_index]
    ceiling = np.nanmean(pt.metrics.single_trial_correlation(np.asarray(test.responses), truth))
    assert 0.5 * ceiling < out["single_trial_correlation"] <= ceiling + 0.02
    assert out["epochs"] < 100  # stopped by the validation tier
    again = fit_anchor(rec, hidden_channels=16, layers=2, max_epochs=3, time_limit=None)
    assert again["validation_correlation"] < out["validation_correlation"]
    with pytest.raises(pt.DataError, match="tiers"):
        fit_anchor(pt.Recording(rec.stimuli, rec.responses, tiers=np.full(rec.n_trials, "train")))
