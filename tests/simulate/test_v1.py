import numpy as np
import pytest
from scipy import stats
from scipy.ndimage import gaussian_filter

import probtwin as pt
from probtwin.simulate import gabor_bank


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.v1(n_neurons=60, n_images=400, repeats=2, seed=7)


def test_shapes_truth_and_recording(sim):
    rec = sim.recording
    assert rec.stimuli.shape == (800, 1, 36, 64) and rec.responses.shape == (800, 60)
    assert rec.behavior.shape == (800, 3) and rec.gaze.shape == (800, 2) and rec.neuron_coords.shape == (60, 3)
    t = sim.truth
    assert t["rf_position"].shape == (60, 2) and t["orientation"].shape == (60,)
    assert t["mean_response"].shape == (800, 60) and t["log_likelihood"].shape == (800,)
    assert t["shifted"].dtype == bool and not t["shifted"].any()
    assert np.all((t["orientation"] >= 0) & (t["orientation"] < np.pi))
    np.testing.assert_array_equal(t["gaze"], np.asarray(rec.gaze))
    for s in np.unique(rec.stimulus_ids):  # repeats never straddle tiers
        assert len(set(rec.tiers[rec.stimulus_ids == s])) == 1
    assert "Simulation(" in repr(sim)


def test_same_seed_same_numbers():
    a = pt.simulate.v1(n_neurons=10, n_images=50, seed=1)
    b = pt.simulate.v1(n_neurons=10, n_images=50, seed=1)
    c = pt.simulate.v1(n_neurons=10, n_images=50, seed=2)
    np.testing.assert_array_equal(np.asarray(a.recording.responses), np.asarray(b.recording.responses))
    np.testing.assert_array_equal(np.asarray(a.recording.stimuli), np.asarray(b.recording.stimuli))
    assert not np.array_equal(np.asarray(a.recording.responses), np.asarray(c.recording.responses))


def test_poisson_log_likelihood_is_exact(sim):
    y = np.asarray(sim.recording.responses)
    expected = stats.poisson.logpmf(y, sim.truth["mean_response"]).sum(1)
    np.testing.assert_allclose(sim.truth["log_likelihood"], expected, rtol=1e-10)


def test_zig_log_likelihood_and_mean():
    s = pt.simulate.v1(n_neurons=20, n_images=3000, likelihood="zig", seed=2)
    y, mu, t = np.asarray(s.recording.responses), s.truth["mean_response"], s.truth
    q, k = t["zig_probability"], t["zig_shape"]
    lp = np.where(y > 0, np.log(q) + stats.gamma.logpdf(np.where(y > 0, y, 1), k, scale=mu / (k * q)), np.log1p(-q))
    np.testing.assert_allclose(t["log_likelihood"], lp.sum(1), rtol=1e-8)
    assert np.mean(y == 0) == pytest.approx(np.mean(1 - q), abs=0.02)
    assert y.mean() == pytest.approx(mu.mean(), rel=0.03)


@pytest.mark.parametrize("likelihood", ["normal", "lognormal"])
def test_correlated_gaussian_models_are_exact(likelihood):
    s = pt.simulate.v1(n_neurons=12, n_images=4000, likelihood=likelihood, correlated_noise_rank=2, seed=4)
    y, mu, t = np.asarray(s.recording.responses), s.truth["mean_response"], s.truth
    C, psi = t["latent_loadings"], t["private_variance"]
    assert C.shape == (12, 2) and t["latent_state"].shape == (4000, 2)
    cov = C @ C.T + np.diag(psi)
    z = y if likelihood == "normal" else np.log1p(y)
    jac = 0 if likelihood == "normal" else -np.log1p(y).sum(1)
    expected = np.array([stats.multivariate_normal.logpdf(z[i], t["latent_mean"][i], cov) for i in range(50)])
    np.testing.assert_allclose(
        t["log_likelihood"][:50], expected + jac[:50] if likelihood != "normal" else expected, rtol=1e-8
    )
    assert y.mean() == pytest.approx(mu.mean(), rel=0.03)  # E[y] = mean_response
    residual = z - t["latent_mean"]
    emp = np.cov(residual.T)
    off = ~np.eye(12, dtype=bool)
    assert np.corrcoef(emp[off], cov[off])[0, 1] > 0.9


def test_correlated_noise_needs_a_latent_model():
    with pytest.raises(pt.DataError) as info:
        pt.simulate.v1(n_neurons=5, n_images=10, likelihood="zig", correlated_noise_rank=2)
    assert info.value.field == "correlated_noise_rank"
    with pytest.raises(pt.DataError) as info:
        pt.simulate.v1(n_neurons=5, n_images=10, correlated_noise_rank=1, latent_pupil_correlation=1.5)
    assert info.value.field == "latent_pupil_correlation"
    with pytest.raises(pt.DataError, match="likelihood"):
        pt.simulate.v1(n_neurons=5, n_images=10, likelihood="bernoulli")
    with pytest.raises(pt.DataError, match="n_neurons"):
        pt.simulate.v1(n_neurons=0)


def test_gabor_filters_are_centred_on_the_receptive_field():
    rng = np.random.default_rng(0)
    pos = np.column_stack([rng.uniform(20, 44, 30), rng.uniform(12, 24, 30)])
    even, odd = gabor_bank(
        pos, rng.uniform(0, np.pi, 30), np.full(30, 0.12), np.full(30, 3.0), rng.uniform(0, 6, 30), (36, 64)
    )
    energy = (even**2 + odd**2).reshape(30, 36, 64)
    y, x = np.mgrid[0:36, 0:64]
    centroid = np.column_stack([(energy * x).sum((1, 2)), (energy * y).sum((1, 2))]) / energy.sum((1, 2))[:, None]
    assert np.abs(centroid - pos).max() < 0.3
    np.testing.assert_allclose(np.linalg.norm(even, axis=1), 1, rtol=1e-5)


def test_linear_receptive_fields_recovered_from_responses_sit_at_the_true_positions():
    s = pt.simulate.v1(n_neurons=40, n_images=4000, gaze_std=0, behavior_gain=0, complex_fraction=0, seed=5)
    X = np.asarray(s.recording.stimuli).reshape(4000, -1).astype(np.float64)
    mu = s.truth["mean_response"]
    w = np.linalg.solve(X.T @ X + 500.0 * np.eye(X.shape[1]), X.T @ (mu - mu.mean(0)))  # whitened STA
    energy = gaussian_filter((w.T**2).reshape(40, 36, 64), (0, 2, 2))
    peak_y, peak_x = np.unravel_index(energy.reshape(40, -1).argmax(1), (36, 64))
    err = np.linalg.norm(np.column_stack([peak_x, peak_y]) - s.truth["rf_position"], axis=1)
    assert np.median(err) < 1.0


def test_gaze_moves_every_receptive_field():
    s = pt.simulate.v1(n_neurons=30, n_images=20, seed=6)
    images = np.asarray(s.recording.stimuli)[:, 0]
    base = s.respond(images)
    d = np.array([3, -2])
    rolled = np.roll(images, shift=(d[1], d[0]), axis=(1, 2))  # content moved by d = (x, y)
    np.testing.assert_allclose(s.respond(rolled, gaze=d[None].astype(float)), base, rtol=1e-3, atol=1e-4)
    assert not np.allclose(s.respond(rolled), base, rtol=1e-2)


def _grating(theta, freq, phase, size=(36, 64)):
    y, x = np.mgrid[0 : size[0], 0 : size[1]]
    return np.cos(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)) + phase)


def test_pupil_shifts_preferred_orientation_of_the_shifted_neurons_only():
    s = pt.simulate.v1(n_neurons=30, n_images=300, pupil_shift_fraction=0.3, pupil_shift_degrees=30, seed=8)
    p = s.population
    thetas = np.deg2rad(np.arange(0, 180, 0.5))
    phases = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    shifted = np.flatnonzero(s.truth["shifted"])
    assert len(shifted) == 9
    small = p.behavior_mean + np.array([-3.0, 0, 0]) * p.behavior_std
    large = p.behavior_mean + np.array([3.0, 0, 0]) * p.behavior_std
    for i in [*shifted[:3], np.flatnonzero(~s.truth["shifted"])[0]]:
        f = p.spatial_frequency[i]
        images = np.stack([_grating(t, f, ph) for t in thetas for ph in phases]) * 0.5
        pref = []
        for state in (small, large):
            r = s.respond(images, behavior=state[None]).reshape(len(thetas), len(phases), -1)[:, :, i].mean(1)
            pref.append(thetas[np.argmax(r)])
        delta = np.rad2deg(np.angle(np.exp(2j * (pref[1] - pref[0]))) / 2)
        expected = 30 * 15 / 16 if s.truth["shifted"][i] else 0.0  # pupil states 1/32 and 31/32
        assert delta == pytest.approx(expected, abs=2.0)


def test_every_neuron_changes_gain_with_pupil(sim):
    p = sim.population
    img = np.asarray(sim.recording.stimuli)[:50, 0]
    low = sim.respond(img, behavior=(p.behavior_mean - [p.behavior_std[0], 0, 0])[None])
    high = sim.respond(img, behavior=(p.behavior_mean + [p.behavior_std[0], 0, 0])[None])
    ratio = (high / low).mean(0)
    np.testing.assert_allclose(np.log(ratio), 2 * sim.truth["behavior_weights"][:, 0], rtol=1e-6)


def test_poisson_latent_state_keeps_the_mean_and_scores_given_the_latent():
    s = pt.simulate.v1(n_neurons=10, n_images=3000, correlated_noise_rank=2, mean_rate=3.0, seed=7)
    t = s.truth
    y, mu = np.asarray(s.recording.responses), t["mean_response"]
    assert "log_likelihood" not in t  # no closed form: the conditional one instead
    c, h = t["latent_loadings"], t["latent_state"]
    rate = mu * np.exp(h @ c.T - 0.5 * (c**2).sum(1))
    np.testing.assert_allclose(t["log_likelihood_given_latent"], stats.poisson.logpmf(y, rate).sum(1), rtol=1e-8)
    assert y.mean() == pytest.approx(mu.mean(), rel=0.03)
    # shared variability: residuals correlate as the loadings say
    resid = (y - mu) / np.sqrt(mu)
    emp = np.corrcoef(resid.T)[np.triu_indices(10, 1)]
    assert np.corrcoef(emp, (c @ c.T)[np.triu_indices(10, 1)])[0, 1] > 0.7


@pytest.mark.parametrize("likelihood", ["lognormal", "poisson"])
def test_latent_state_can_follow_pupil(likelihood):
    s = pt.simulate.v1(
        n_neurons=5, n_images=4000, likelihood=likelihood, correlated_noise_rank=2, latent_pupil_correlation=0.8, seed=8
    )
    pupil = np.asarray(s.recording.behavior)[:, 0]
    h = s.truth["latent_state"]
    assert np.corrcoef(h[:, 0], pupil)[0, 1] == pytest.approx(0.8, abs=0.03)
    assert abs(np.corrcoef(h[:, 1], pupil)[0, 1]) < 0.05
    assert h[:, 0].std() == pytest.approx(1.0, abs=0.05)
