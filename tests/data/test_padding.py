"""Trials of unequal length: NaN padding found, checked, held and left out of every score."""

import numpy as np
import pytest
import torch

import probtwin as pt
from probtwin.data.batching import clip_arrays
from probtwin.data.padding import check_padded, frame_counts, frame_mask, hold_padding, recorded_frames
from probtwin.data.registry import moments, response_stats
from probtwin.twins.noise import make_noise
from probtwin.twins.noise.base import PopulationResponse


def padded(values: np.ndarray, lengths, axis: int = 1) -> np.ndarray:
    """``values`` with NaN from each trial's length on (along ``axis``)."""
    out = np.array(values, dtype=np.float64)
    shape = [1] * out.ndim
    shape[0], shape[axis] = len(lengths), out.shape[axis]
    after = ~frame_mask(np.asarray(lengths), out.shape[axis])
    return np.where(after.reshape(shape), np.nan, out)


def test_frame_counts_find_each_trials_length_and_refuse_other_nan(rng):
    y = padded(rng.normal(size=(4, 6, 3)), [6, 4, 1, 5])
    assert frame_counts(y).tolist() == [6, 4, 1, 5]
    assert frame_counts(np.moveaxis(y, 1, 2), axis=2).tolist() == [6, 4, 1, 5]
    inside = y.copy()
    inside[0, 2] = np.nan
    with pytest.raises(pt.DataError, match="inside trial 0, frame 2"):
        frame_counts(inside)
    partial = y.copy()
    partial[1, 5, 0] = 5.0  # a value in a padding frame: a frame partly NaN
    with pytest.raises(pt.DataError, match="some values of trial 1, frame 5"):
        frame_counts(partial)
    empty = y.copy()
    empty[3] = np.nan
    with pytest.raises(pt.DataError, match="trial 3 is all NaN"):
        frame_counts(empty)
    infinite = y.copy()
    infinite[0, 0, 0] = np.inf
    with pytest.raises(pt.DataError, match="inf at index"):
        frame_counts(infinite)
    assert frame_counts(np.ones((2, 3, 1), dtype=np.int64)).tolist() == [3, 3]


def test_inputs_are_checked_only_in_recorded_frames(rng):
    lengths = np.array([5, 3])
    behavior = rng.normal(size=(2, 5, 2))
    behavior[1, 3:] = np.nan  # padding
    behavior[0, 4, 0] = 9.0
    check_padded(behavior, "behavior", lengths)
    behavior[1, 2, 1] = np.nan  # a recorded frame
    with pytest.raises(pt.DataError, match="behavior.*trial 1, frame 2"):
        check_padded(behavior, "behavior", lengths)


def test_hold_padding_repeats_the_last_frame_and_returns_the_lengths(rng):
    y = padded(rng.normal(size=(3, 5, 2)), [5, 2, 4])
    videos = padded(rng.normal(size=(3, 1, 7, 2, 2)), [7, 4, 6], axis=2)  # responses after 2 unscored frames
    gaze = rng.normal(size=(3, 7, 2))  # finite past the trials' ends: held all the same
    held, lengths = hold_padding({"responses": y, "stimuli": videos, "gaze": gaze})
    assert lengths.tolist() == [5, 2, 4]
    assert all(np.isfinite(v).all() for v in held.values())
    np.testing.assert_array_equal(held["responses"][1, 2:], np.repeat(y[1, 1:2], 3, 0))
    np.testing.assert_array_equal(held["stimuli"][1, :, 4:], np.repeat(videos[1, :, 3:4], 3, 1))
    np.testing.assert_array_equal(held["gaze"][2, 6], gaze[2, 5])
    np.testing.assert_array_equal(held["gaze"][0], gaze[0])
    full = {"responses": rng.normal(size=(2, 3, 1))}
    assert hold_padding(full)[1] is None
    images = {"stimuli": rng.normal(size=(2, 1, 4, 4)), "responses": rng.normal(size=(2, 3))}
    assert hold_padding(images) == (images, None)


def test_a_recording_of_unequal_trials(rng):
    lengths = [8, 5, 8, 3, 8, 6]
    y = padded(rng.poisson(2.0, size=(6, 8, 4)), lengths)
    videos = padded(rng.normal(size=(6, 1, 8, 4, 5)), lengths, axis=2)
    videos[3, :, 3:] = 0.0  # movies may be padded with anything finite
    behavior = padded(rng.normal(size=(6, 8, 2)), lengths)
    rec = pt.Recording(videos, y, behavior=behavior, tiers=np.array(["train"] * 4 + ["test"] * 2))
    assert rec.frame_counts.tolist() == lengths and rec.padded and rec.n_frames == 8
    assert rec.split("test").frame_counts.tolist() == [8, 6]
    assert "3-8 frames (NaN-padded)" in repr(rec)
    stats = response_stats(rec.responses)
    recorded = y[~np.isnan(y).all(-1)]
    np.testing.assert_allclose(stats["mean"], recorded.mean(0))
    np.testing.assert_allclose(moments(rec.behavior, (1,))[0], behavior[~np.isnan(behavior).all(-1)].mean(0))
    bad = behavior.copy()
    bad[2, 1] = np.nan
    with pytest.raises(pt.DataError, match="behavior.*trial 2, frame 1"):
        pt.Recording(videos, y, behavior=bad)
    bad = videos.copy()
    bad[0, 0, 7] = np.nan
    with pytest.raises(pt.DataError, match="stimuli.*trial 0, frame 7"):
        pt.Recording(bad, y)
    sim = pt.simulate.motor(n_units=4, n_trials=12, frames=8, seed=0)
    cut = padded(np.asarray(sim.recording.responses), lengths * 2)
    with pytest.raises(pt.DataError, match="does not read NaN-padded trials"):
        pt.MotorGraphTwin(pt.Recording(np.asarray(sim.recording.stimuli), cut, behavior=sim.recording.behavior))


def test_scores_leave_the_padding_out(rng):
    lengths = [6, 2, 4]
    y = padded(rng.normal(size=(3, 6, 5)), lengths)
    p = y + rng.normal(size=y.shape)
    keep = frame_mask(np.array(lengths), 6)
    np.testing.assert_allclose(
        pt.metrics.single_trial_correlation(y, np.nan_to_num(p)),
        pt.metrics.single_trial_correlation(y[keep], p[keep]),
    )
    draws = rng.normal(size=(50, *y.shape))
    assert pt.metrics.interval_coverage(draws, y) == pt.metrics.interval_coverage(draws[:, keep], y[keep])
    ids = np.array([0, 0, 1])
    y[1] = padded(y[:1], [2])[0]  # two repeats of one movie, the second cut at frame 2
    assert np.isfinite(pt.metrics.correlation_to_average(y, np.nan_to_num(p), ids)).all()
    assert np.isfinite(pt.metrics.fev(y, ids)).all()


def test_clips_stay_inside_their_trials(rng):
    n, frames = 40, 30
    lengths = rng.integers(8, frames + 1, n)
    stamp = np.broadcast_to(np.arange(frames, dtype=float), (n, frames))
    arrays = {
        "responses": padded(stamp[..., None], lengths),
        "stimuli": padded(stamp[:, None, :, None, None], lengths, axis=2),
    }
    clip, burn = 12, 3
    out = clip_arrays(arrays, clip, np.random.default_rng(0), burn)
    scored = out["lengths"]
    assert np.isfinite(out["responses"]).all() and np.isfinite(out["stimuli"]).all()
    long = lengths >= clip
    np.testing.assert_array_equal(scored[long], clip - burn)  # a window inside the trial
    np.testing.assert_array_equal(scored[~long], lengths[~long] - burn)  # from its first frame
    last = out["stimuli"][:, 0, -1, 0, 0]
    assert np.all(last <= lengths - 1)  # no frame past a trial's end
    np.testing.assert_array_equal(out["responses"][:, :, 0], out["stimuli"][:, 0, burn:, 0, 0])
    with pytest.raises(pt.DataError, match="burn_in"):
        clip_arrays(arrays, clip, np.random.default_rng(0), int(lengths.min()))  # a trial all burn-in


def test_the_likelihood_scores_the_masked_frames_only(rng):
    noise = make_noise("independent", "poisson", 3)
    loc = torch.rand(2, 5, 3) * 3
    y = torch.poisson(loc)
    mask = torch.as_tensor(frame_mask(np.array([5, 2]), 5))
    lp = PopulationResponse(noise, loc, frames=True, frame_mask=mask).log_prob(y)
    full = noise.log_prob(loc, y)  # (trials, frames)
    torch.testing.assert_close(lp, torch.stack([full[0].sum(), full[1, :2].sum()]))


def test_recorded_frames_marks_each_trials_frames_and_holds_its_padding():
    y = np.arange(2 * 4 * 3, dtype=float).reshape(2, 4, 3)
    y[1, 2:] = np.nan  # a trial of two frames
    recorded, held = recorded_frames(y)
    np.testing.assert_array_equal(recorded, [[True] * 4, [True, True, False, False]])
    np.testing.assert_array_equal(held[1, 2:], np.stack([y[1, 1]] * 2))
    np.testing.assert_array_equal(held[0], y[0])
    per_trial = y[:, 0]
    none, same = recorded_frames(per_trial)
    assert none is None and same is per_trial
