import numpy as np
import pytest

import probtwin as pt
from probtwin.bench import ridge_baseline, run_accuracy


def test_ridge_baseline_recovers_a_linear_population():
    rng = np.random.default_rng(0)
    n = 1500
    x = rng.normal(size=(n, 1, 14, 14)).astype(np.float32)
    w = rng.normal(size=(196, 5))
    signal = x.reshape(n, -1) @ w
    linear = pt.Recording(x, signal + rng.normal(0, 0.5 * signal.std(), size=signal.shape))
    assert ridge_baseline(linear) > 0.85
    noise = pt.Recording(x, rng.normal(size=(n, 5)))
    assert abs(ridge_baseline(noise)) < 0.1


def test_run_accuracy_on_one_small_real_data_set(shared_data, monkeypatch):
    monkeypatch.setenv("PROBTWIN_DATA", str(shared_data))
    lines = []
    rows = run_accuracy(["allen_v1"], max_epochs=1, log=lines.append)
    assert rows[0]["data"] == "allen_v1" and rows[0]["epochs"] == 1
    ridge = pt.bench.accuracy.ridge_baseline(pt.datasets.allen_v1())  # the same split, fitted here
    assert rows[0]["ridge_correlation"] == pytest.approx(ridge, rel=1e-9)
    assert np.isfinite(rows[0]["single_trial_correlation"]) and rows[0]["log_likelihood_bits"] < 0
    assert rows[0]["anchor_epochs"] == 1 and np.isfinite(rows[0]["anchor_correlation"])  # the same budget
    assert "allen_v1" in lines[0] and "ridge" in lines[0] and "anchor" in lines[0]
