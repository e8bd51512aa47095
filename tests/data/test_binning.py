import numpy as np
import pytest

import probtwin as pt
from probtwin.data.binning import bin_spike_times, frame_grid, resample_series


def test_frame_grid_cuts_whole_frames_and_pads_shorter_trials():
    grid = frame_grid(np.array([0.0, 10.0]), np.array([1.0, 10.75]), 0.25)
    assert grid.n_frames == 4
    np.testing.assert_array_equal(grid.counts, [4, 3])
    np.testing.assert_allclose(grid.edges[0], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(grid.mask, [[True] * 4, [True, True, True, False]])
    # a window of 0.3 s holds one whole frame of 0.25 s: the partial rest is not kept
    assert frame_grid(np.array([0.0]), np.array([0.3]), 0.25).counts.tolist() == [1]
    # 0.1 + 0.2 is 0.30000000000000004: three frames of 0.1, not two
    assert frame_grid(np.array([0.0]), np.array([0.1 + 0.2]), 0.1).counts.tolist() == [3]


def test_frame_grid_refuses_bad_windows():
    with pytest.raises(pt.DataError, match="window"):
        frame_grid(np.array([0.0, 1.0]), np.array([1.0, np.nan]), 0.1)
    with pytest.raises(pt.DataError, match="window"):
        frame_grid(np.array([0.0]), np.array([0.0]), None)
    with pytest.raises(pt.DataError, match="bin_size"):
        frame_grid(np.array([0.0]), np.array([1.0]), 2.0)
    with pytest.raises(pt.DataError, match="bin_size"):
        frame_grid(np.array([0.0]), np.array([1.0]), -0.1)


def test_spike_counts_equal_a_direct_count(rng):
    spikes = [rng.uniform(0, 20, size=n) for n in (0, 5, 300)]
    spikes[2][:3] = [1.0, 1.5, 2.0]  # spikes exactly on frame edges belong to the frame they open
    starts = np.array([1.0, 4.0, 12.5])
    stops = starts + np.array([1.0, 0.7, 1.0])
    grid = frame_grid(starts, stops, 0.5)
    counts = bin_spike_times(spikes, grid)
    assert counts.shape == (3, 2, 3)
    for t in range(3):
        for f in range(2):
            lo, hi = starts[t] + 0.5 * f, starts[t] + 0.5 * (f + 1)
            if hi > stops[t] + 1e-12:
                assert np.isnan(counts[t, f]).all()
                continue
            direct = [((s >= lo) & (s < hi)).sum() for s in spikes]
            np.testing.assert_array_equal(counts[t, f], direct)
    whole = bin_spike_times(spikes, frame_grid(starts, stops, None))
    assert whole.shape == (3, 3)
    np.testing.assert_array_equal(
        whole[:, 2], [((spikes[2] >= a) & (spikes[2] < b)).sum() for a, b in zip(starts, stops)]
    )


def test_a_spike_on_a_frame_edge_opens_the_next_frame():
    # 1000.7 + 0.1 rounds to 1000.8000000000001: the spike at 1000.8 still belongs to frame 1
    grid = frame_grid(np.array([1000.7]), np.array([1000.9]), 0.1)
    np.testing.assert_array_equal(bin_spike_times([np.array([1000.8])], grid), [[[0.0], [1.0]]])
    np.testing.assert_array_equal(
        bin_spike_times([np.array([0.3])], frame_grid(np.array([0.0]), np.array([0.3]), None)), [[0.0]]
    )


def test_missing_samples_are_skipped_not_spread():
    t = np.arange(0.0, 4.0, 0.01)
    x = np.sin(t)
    x[100] = np.nan  # one blink at 1 s
    grid = frame_grid(np.array([0.5]), np.array([3.5]), 0.25)
    out = resample_series(t, x, grid, "pupil")[0, :, 0]
    assert np.isfinite(out).all()
    inside = (t >= 1.0 - 1e-9) & (t < 1.25 - 1e-9) & np.isfinite(x)
    assert out[2] == pytest.approx(x[inside].mean())
    x[50:200] = np.nan  # no finite sample in or around some frames: refused, not filled
    x[:50] = np.nan
    with pytest.raises(pt.DataError, match="pupil.*finite samples"):
        resample_series(t, np.where(t < 2.0, np.nan, x), frame_grid(np.array([0.5]), np.array([1.0]), 0.25), "pupil")
    with pytest.raises(pt.DataError, match="bin_size"):
        frame_grid(np.array([0.0]), np.array([1.0]), "0.5")


def test_resample_averages_fast_series_and_interpolates_slow_ones():
    t = np.arange(0, 10, 0.01)
    x = np.stack([np.sin(t), t], axis=1)
    grid = frame_grid(np.array([1.0, 3.0]), np.array([2.0, 4.0]), 0.25)
    out = resample_series(t, x, grid)
    assert out.shape == (2, 4, 2)
    inside = (t >= 3.25 - 1e-9) & (t < 3.5 - 1e-9)
    np.testing.assert_allclose(out[1, 1], x[inside].mean(0))
    # a linear series sampled every second, read in frames of 0.25 s: the value at each centre
    slow_t = np.arange(0.0, 10.0)
    slow = resample_series(slow_t, 2 * slow_t + 1, grid)
    np.testing.assert_allclose(slow[0, :, 0], [3.0, 2 * 1.375 + 1, 2 * 1.625 + 1, 2 * 1.875 + 1])
    with pytest.raises(pt.DataError, match="pupil.*outside"):
        resample_series(slow_t, slow_t, frame_grid(np.array([20.0]), np.array([21.0]), 0.5), "pupil")
    with pytest.raises(pt.DataError, match="increasing"):
        resample_series(slow_t[::-1], slow_t, grid)
