import numpy as np
import pytest
import torch

import probtwin as pt
from probtwin.bench.video import SensoriumVideoBaseline, fit_video_anchor, frames_as_images, run_video_comparison


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.video(n_neurons=16, n_trials=40, n_frames=20, image_size=(12, 16), mean_rate=3.0, seed=3)


def test_frames_as_images_keeps_each_frame_with_its_response(sim):
    rec = sim.recording
    frames = frames_as_images(rec)
    assert frames.stimuli.shape == (40 * 20, 1, 12, 16) and frames.responses.shape == (800, 16)
    t, f = 7, 13  # trial 7, frame 13 is image 7 * 20 + 13
    np.testing.assert_array_equal(frames.stimuli[t * 20 + f, 0], rec.stimuli[t, 0, f])
    np.testing.assert_array_equal(frames.responses[t * 20 + f], rec.responses[t, f])
    np.testing.assert_array_equal(frames.gaze[t * 20 + f], rec.gaze[t, f])
    assert frames.tiers[t * 20 + f] == rec.tiers[t]
    # scored the same: the correlation over test frames is the per-frame correlation of the videos
    truth = sim.truth["mean_response"]
    video_r = pt.metrics.single_trial_correlation(
        np.asarray(rec.split("test").responses), truth[rec.split("test").trial_index]
    )
    image_r = pt.metrics.single_trial_correlation(
        np.asarray(frames.split("test").responses), truth.reshape(-1, 16)[np.repeat(rec.tiers == "test", 20)]
    )
    np.testing.assert_allclose(video_r, image_r)
    with pytest.raises(pt.DataError, match="videos"):
        frames_as_images(frames)
    y = np.asarray(rec.responses).copy()
    y[0, 15:] = np.nan  # a trial shorter than the others
    with pytest.raises(pt.DataError, match="equal length"):
        fit_video_anchor(pt.Recording(np.asarray(rec.stimuli), y))


def test_the_sensorium_2023_baseline_is_causal_and_learns(sim):
    torch.manual_seed(0)
    model = SensoriumVideoBaseline(1, 5, torch.ones(5), dict(hidden_channels=4, layers=2))
    model.eval()
    x = torch.randn(2, 1, 10, 12, 16)
    changed = x.clone()
    changed[:, :, 7:] = 0.0
    a, b = model(x), model(changed)
    assert a.shape == (2, 10, 5) and torch.all(a > 0)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    fit = fit_video_anchor(
        sim.recording, core=dict(hidden_channels=8, layers=2), clip_frames=16, burn_in=4, max_epochs=15, time_limit=None
    )
    assert fit["epochs"] >= 5 and fit["validation_correlation"] > 0.1 and fit["single_trial_correlation"] > 0.1


def test_the_comparison_reports_every_side_beside_the_truth():
    out = run_video_comparison(
        n_neurons=8, n_trials=16, n_frames=24, seed=1, time_limit=2.0, sides=("video_twin", "image_twin_per_frame")
    )
    assert out["true_model"] > 0.3
    for side in ("video_twin", "image_twin_per_frame"):
        assert -1 <= out[side] <= out["true_model"] + 0.05 and out[f"{side}_epochs"] >= 1
    assert 0 < out["video_twin_coverage_90"] <= 1
    assert 0 <= out["video_twin_direction_coverage_90"] <= 1 and -1 <= out["video_twin_direction_curve_r"] <= 1
    assert 0 <= out["video_twin_latency_within_1_frame"] <= 1 and out["video_twin_latency_error_frames"] >= 0
    assert out["video_twin_direction_selective_cells"] <= 8
    assert -1 <= out["video_twin_kernel_latency_r"] <= 1 and out["video_twin_kernel_latency_error_frames"] >= 0
    assert 0 <= out["video_twin_kernel_latency_coverage_90"] <= 1
    assert out["video_twin_constant_latency_within_1_frame"] == 1.0  # simulated latencies span 1.5-4 frames
    with pytest.raises(pt.DataError, match="sides"):
        run_video_comparison(n_neurons=4, n_trials=8, n_frames=12, time_limit=1.0, sides=("ridge",))


def test_circular_distance_wraps():
    from probtwin.bench.video import _circular_distance

    np.testing.assert_allclose(
        _circular_distance(np.array([0.1, 6.2, np.pi]), np.array([6.2, 0.1, 0.0])),
        [0.1 + 2 * np.pi - 6.2, 0.1 + 2 * np.pi - 6.2, np.pi],
        atol=1e-12,
    )


def test_speed_rows_and_linear_activation_memory():
    from probtwin.bench.video import speed

    rows = speed(clip_lengths=(8, 16, 32), batch_size=2, n_neurons=10, steps=1, num_samples=2)
    assert [r["clip_frames"] for r in rows] == [8, 16, 32]
    saved = np.array([r["twin_saved_mib"] for r in rows])
    np.testing.assert_allclose(saved[1:] / saved[:-1], 2.0, rtol=0.15)  # activation memory linear in the clip
    assert all(r["twin_step_s"] > 0 and r["plain_step_s"] > 0 and r["twin_predict_fps"] > 0 for r in rows)
