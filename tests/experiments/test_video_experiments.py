import numpy as np
import pytest
import xarray as xr

import probtwin as pt
from probtwin.experiments import (
    direction_selectivity,
    drifting_gratings,
    flash_response,
    flashes,
    gratings,
    moving_bars,
    preferred_direction,
    response_latency,
    tuning_curve,
)


@pytest.fixture(scope="module")
def twin():
    sim = pt.simulate.video(n_neurons=6, n_trials=16, n_frames=16, image_size=(12, 16), seed=1)
    twin = pt.VideoTwin(sim.recording, hidden_channels=4, layers=2, input_frames=5, hidden_frames=2)
    twin.fit(max_epochs=1, progress=False)
    return twin


def test_drifting_gratings_move_along_their_direction_at_their_speed():
    f, w = 0.125, 0.125  # one pixel a frame
    directions = np.arange(4) * np.pi / 2  # right, down, left, up
    s = drifting_gratings(directions, f, w, phases=1, frames=6, size=(16, 16))
    assert s.images.shape == (4, 1, 6, 16, 16) and list(s.parameters.columns) == [
        "direction", "spatial_frequency", "temporal_frequency", "phase",
    ]  # fmt: skip
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]  # (rows, columns) per frame
    for movie, (dy, dx) in zip(s.images[:, 0], steps):
        for t in range(1, 6):  # frame t is frame 0 moved t steps (the pattern's period is 8 pixels)
            np.testing.assert_allclose(movie[t], np.roll(movie[0], (t * dy, t * dx), axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(np.sqrt((s.images**2).mean()), 1.0, atol=0.02)  # unit RMS contrast


def test_moving_bars_sweep_the_screen_in_their_direction():
    s = moving_bars([0.0, np.pi / 2], widths=2.0, speeds=2.0, polarities=[1], frames=20, size=(10, 14), contrast=1.0)
    rightward = s.images[0, 0]  # direction 0: the bar moves to the right
    columns = [np.flatnonzero(frame.max(0) > 0.5) for frame in rightward]
    centres = [c.mean() for c in columns if len(c)]
    assert len(centres) >= 5 and np.all(np.diff(centres) > 0)
    downward = s.images[1, 0]
    rows = [np.flatnonzero(frame.max(1) > 0.5).mean() for frame in downward if frame.max() > 0.5]
    assert np.all(np.diff(rows) > 0)
    with pytest.raises(pt.DataError, match="polarities"):
        moving_bars([0.0], polarities=[2], frames=5, size=(8, 8))


def test_flashes_show_each_image_for_one_frame():
    images = gratings([0.0, 1.0], phases=2, size=(8, 8))
    movies = flashes(images, frames=5)
    assert movies.images.shape == (4, 1, 5, 8, 8)
    np.testing.assert_array_equal(movies.images[:, :, 0], images.images)
    np.testing.assert_allclose(movies.images[:, :, 1:], images.images.mean(), atol=1e-6)
    with pytest.raises(pt.DataError, match="frames"):
        flashes(images)  # no twin of videos to say how long


def _direction_curve(preferred: np.ndarray, amplitude: np.ndarray) -> xr.DataArray:
    theta = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    r = 1 + amplitude[None, :] * np.cos(theta[:, None] - preferred[None, :])
    return xr.DataArray(r[None], dims=("sample", "direction", "neuron"), coords={"direction": theta})


def test_direction_statistics_are_exact_on_cosine_tuning():
    preferred, amplitude = np.array([0.5, 3.0, 5.5]), np.array([0.2, 0.6, 1.0])
    curve = _direction_curve(preferred, amplitude)
    np.testing.assert_allclose(preferred_direction(curve).values[0], preferred, atol=1e-9)
    np.testing.assert_allclose(direction_selectivity(curve).values[0], amplitude / 2, atol=1e-9)
    with pytest.raises(pt.DataError, match="direction"):
        direction_selectivity(curve.rename(direction="orientation"))


def test_video_tuning_curves_and_latency_read_the_twins_predictions(twin):
    g = drifting_gratings(np.linspace(0, 2 * np.pi, 4, endpoint=False), phases=2, twin=twin)
    assert g.images.shape[2:] == (16, 12, 16)
    curve = tuning_curve(twin, g, num_samples=3)
    assert curve.dims == ("sample", "direction", "spatial_frequency", "temporal_frequency", "neuron")
    past = twin.past_frames  # the steady frames: each response sees the grating alone
    per_frame = twin.predict(g.images, num_samples=3).samples  # (draws, stimuli, frames, neurons)
    expected = per_frame[:, :, past:].mean(2).reshape(3, 4, 2, 6).mean(2)  # steady frames, phases averaged
    np.testing.assert_allclose(curve.values[:, :, 0, 0], expected, rtol=1e-5)

    images = gratings([0.0, np.pi / 2], twin=twin)
    course = flash_response(twin, images, frames=12, num_samples=3)
    assert course.dims == ("sample", "frame", "neuron") and course.shape == (3, 12, 6)
    raw = twin.predict(flashes(images, 12).images, num_samples=3).samples.mean(1)
    np.testing.assert_allclose(course.values, raw - raw[:, -1:], rtol=1e-4, atol=1e-6)
    latency = response_latency(twin, images, frames=12, num_samples=3)
    np.testing.assert_array_equal(latency.values, np.abs(course.values).argmax(1))
    with pytest.raises(pt.DataError, match="frames"):
        pt.experiments.predicted_responses(twin, g, num_samples=2, frames="last")
