"""probtwin.hypothesis: posterior summaries against analytic posteriors, FDR control against truth."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import probtwin as pt
from probtwin import hypothesis


def spike_and_slab(rng, n, null_fraction=0.8, tau=3.0, draws=1000):
    """theta ~ null_fraction delta_0 + (1 - null_fraction) N(0, tau^2), x ~ N(theta, 1); exact posterior draws."""
    theta = np.where(rng.uniform(size=n) < null_fraction, 0.0, rng.normal(0, tau, n))
    x = theta + rng.normal(size=n)
    slab = (1 - null_fraction) * stats.norm.pdf(x, 0, np.sqrt(tau**2 + 1))
    p_slab = slab / (slab + null_fraction * stats.norm.pdf(x, 0, 1))
    shrink = tau**2 / (tau**2 + 1)
    from_slab = rng.uniform(size=(draws, n)) < p_slab
    samples = np.where(from_slab, rng.normal(x * shrink, np.sqrt(shrink), (draws, n)), 0.0)
    return theta, samples


@pytest.mark.parametrize("delta", [None, 0.5])
def test_discoveries_control_the_false_discovery_rate_under_the_true_posterior(delta):
    rng = np.random.default_rng(0)
    fdr, power = [], []
    for _ in range(20):
        theta, samples = spike_and_slab(rng, 400)
        table = hypothesis.test(samples, delta=delta, alpha=0.05)
        found = table["discovery"].to_numpy()
        real = theta != 0 if delta is None else np.abs(theta) > delta
        fdr.append((found & ~real).sum() / max(found.sum(), 1))
        power.append((found & real).sum() / real.sum())
        assert table.attrs["expected_fdr"] <= 0.05
    assert 0.02 <= np.mean(fdr) <= 0.065  # at most 0.05 in expectation, and not needlessly below it
    assert np.mean(power) > 0.3  # many slab effects are too small to see from one observation


def test_summaries_match_a_normal_posterior():
    rng = np.random.default_rng(1)
    mu, sd = np.array([-1.0, 0.2, 2.5]), np.array([0.5, 1.0, 0.8])
    samples = rng.normal(mu, sd, size=(40000, 3))
    table = hypothesis.test(samples, delta=1.0, level=0.9)
    assert np.allclose(table["mean"], mu, atol=0.02)
    assert np.allclose(table["lower"], mu - 1.6449 * sd, atol=0.03)
    assert np.allclose(table["upper"], mu + 1.6449 * sd, atol=0.03)
    assert np.allclose(table["p_greater"], stats.norm.sf(1.0, mu, sd), atol=0.01)
    outside = stats.norm.sf(1.0, mu, sd) + stats.norm.cdf(-1.0, mu, sd)
    assert np.allclose(table["p_outside"], outside, atol=0.01)
    assert np.allclose(table["lfsr"], np.minimum(stats.norm.cdf(0, mu, sd), stats.norm.sf(0, mu, sd)), atol=0.01)
    p = table["p_outside"]
    assert np.allclose(table["log_bayes_factor"], np.log(p / (1 - p)))
    assert np.allclose(table["error_probability"], 1 - p)
    signs = hypothesis.test(samples)
    assert np.allclose(signs["error_probability"], signs["lfsr"])
    assert signs["discovery"].tolist() == [True, False, True]


def test_expected_fdr_discoveries_takes_the_largest_passing_prefix():
    err = np.array([0.2, 0.01, 0.03, 0.04, 0.9])
    # sorted 0.01, 0.03, 0.04, 0.2: running means 0.01, 0.02, 0.027, 0.07
    assert hypothesis.expected_fdr_discoveries(err, 0.05).tolist() == [False, True, True, True, False]
    assert hypothesis.expected_fdr_discoveries(err, 0.08).tolist() == [True, True, True, True, False]
    assert not hypothesis.expected_fdr_discoveries(np.array([0.5, 0.6]), 0.05).any()


def test_a_data_array_keeps_neuron_ids_and_probabilities_are_never_zero():
    values = np.ones((10, 2))
    da = xr.DataArray(values, dims=("sample", "neuron"), coords={"neuron": ["a7", "b2"]})
    table = hypothesis.test(da)
    assert isinstance(table, pd.DataFrame) and table.index.tolist() == ["a7", "b2"]
    assert np.all(table["lfsr"] > 0) and np.all(np.isfinite(table["log_bayes_factor"]))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"effect_samples": np.ones(5)}, "effect_samples"),
        ({"effect_samples": np.full((5, 2), np.nan)}, "effect_samples"),
        ({"effect_samples": np.ones((1, 2))}, "effect_samples"),
        ({"effect_samples": np.ones((5, 2)), "alpha": 1.5}, "alpha"),
        ({"effect_samples": np.ones((5, 2)), "delta": -1.0}, "delta"),
        ({"effect_samples": np.ones((5, 2)), "neuron_ids": [1]}, "neuron_ids"),
        ({"effect_samples": xr.DataArray(np.ones((5, 2)), dims=("draw", "unit"))}, "effect_samples"),
    ],
)
def test_bad_input_is_a_data_error(kwargs, field):
    with pytest.raises(pt.DataError, match=field):
        hypothesis.test(**kwargs)
