import numpy as np
import pytest
from scipy import stats

import probtwin as pt
from probtwin.simulate.video import LAGS, temporal_kernel


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.video(n_neurons=40, n_trials=30, n_frames=24, repeats=2, seed=3)


def _grating(p, theta, frequency, speed, frames=40):
    """A full-field grating moving along theta at ``speed`` pixels per frame, (frames, H, W)."""
    height, width = p.image_size
    y, x = np.mgrid[0:height, 0:width]
    t = np.arange(frames)[:, None, None]
    return np.cos(2 * np.pi * frequency * ((x * np.cos(theta) + y * np.sin(theta))[None] - speed * t))


def test_shapes_truth_and_recording(sim):
    rec = sim.recording
    assert rec.stimuli.shape == (60, 1, 24, 24, 32) and rec.stimulus_kind == "videos"
    assert rec.responses.shape == (60, 24, 40) and rec.n_frames == 24
    assert rec.behavior.shape == (60, 24, 3) and rec.gaze.shape == (60, 24, 2)
    t = sim.truth
    assert t["mean_response"].shape == (60, 24, 40) and t["log_likelihood"].shape == (60,)
    assert t["temporal_kernel"].shape == (40, LAGS) and t["displacement"].shape == (60, 24, 2)
    assert np.all((t["direction"] >= 0) & (t["direction"] < 2 * np.pi))
    np.testing.assert_allclose(t["temporal_frequency"], t["spatial_frequency"] * t["speed"])
    np.testing.assert_array_equal(t["gaze"], np.asarray(rec.gaze))
    for s in np.unique(rec.stimulus_ids):  # a movie's repeats show the same frames, never straddle tiers
        shown = np.flatnonzero(rec.stimulus_ids == s)
        assert len(set(rec.tiers[shown])) == 1
        np.testing.assert_array_equal(rec.stimuli[shown[0]], rec.stimuli[shown[1]])


def test_same_seed_same_numbers():
    a, b, c = (pt.simulate.video(n_neurons=5, n_trials=4, n_frames=12, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(np.asarray(a.recording.responses), np.asarray(b.recording.responses))
    assert not np.array_equal(np.asarray(a.recording.responses), np.asarray(c.recording.responses))


def test_poisson_log_likelihood_is_exact_per_trial(sim):
    y = np.asarray(sim.recording.responses)
    expected = stats.poisson.logpmf(y, sim.truth["mean_response"]).sum((1, 2))
    np.testing.assert_allclose(sim.truth["log_likelihood"], expected, rtol=1e-10)
    np.testing.assert_allclose(
        sim.respond(sim.recording.stimuli[:3], sim.recording.behavior[:3], sim.recording.gaze[:3]),
        sim.truth["mean_response"][:3],
        rtol=1e-5,
    )


def test_temporal_kernel_peaks_at_the_latency():
    latency = np.array([1.5, 2.0, 3.2])
    k = temporal_kernel(latency)
    np.testing.assert_allclose(k[:, 0], 0.0)
    # k depends on tau / latency only: on a 100x finer grid the peak sits at the latency, height 1
    fine = temporal_kernel(latency * 100, lags=400)
    np.testing.assert_allclose(np.argmax(fine, 1) / 100, latency, atol=0.011)
    np.testing.assert_allclose(fine.max(1), 1.0, atol=1e-4)


def test_direction_selective_cells_prefer_their_direction(sim):
    p = sim.population
    cells = np.flatnonzero(p.direction_selectivity > 0.7)
    for i in cells[:6]:
        preferred, opposite = (
            sim.respond(_grating(p, th, p.spatial_frequency[i], p.speed[i])[None])[0, 20:, i].mean()
            for th in (p.direction[i], p.direction[i] + np.pi)
        )
        assert preferred > 2 * opposite


def test_flash_response_peaks_at_the_latency():
    """A complex, fully direction-selective cell's drive to a one-frame flash follows its
    temporal kernel: the response peaks within a frame of the latency."""
    sim = pt.simulate.video(n_neurons=30, n_trials=4, n_frames=16, complex_fraction=1.0, seed=5)
    p = sim.population
    p.direction_selectivity[:] = 1.0
    for i in range(5):
        flash = np.zeros((LAGS + 4, *p.image_size))
        flash[0] = _grating(p, p.direction[i], p.spatial_frequency[i], 0.0, frames=1)[0]
        drive = p.drive(flash[None])[0, :, i]
        assert abs(np.argmax(drive) - p.latency[i]) <= 1.0


def test_bad_arguments_are_data_errors():
    with pytest.raises(pt.DataError, match="n_frames"):
        pt.simulate.video(n_frames=LAGS - 1)
    with pytest.raises(pt.DataError, match="complex_fraction"):
        pt.simulate.video(complex_fraction=1.5)
    sim = pt.simulate.video(n_neurons=4, n_trials=2, n_frames=12, seed=0)
    with pytest.raises(pt.DataError, match="videos"):
        sim.respond(np.zeros((2, 12, 5, 5)))
