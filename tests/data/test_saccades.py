import numpy as np
import pytest

import probtwin as pt
from probtwin.data.saccades import saccade_covariates


def test_covariates_of_one_jump():
    g = np.zeros((1, 6, 2))
    g[0, 3:] = [5.0, -2.0]
    c = saccade_covariates(g)
    assert c["onset"][0].tolist() == [False, False, False, True, False, False]
    assert c["since_onset"][0].tolist() == [np.inf, np.inf, np.inf, 0, 1, 2]
    assert c["lag"][0].tolist() == [-3, -2, -1, 0, 1, 2]
    np.testing.assert_array_equal(c["vector"][0], np.tile([5.0, -2.0], (6, 1)))
    np.testing.assert_array_equal(c["last_vector"][0, :3], 0.0)
    np.testing.assert_array_equal(c["last_vector"][0, 3:], np.tile([5.0, -2.0], (3, 1)))


def test_a_saccade_over_several_frames_is_one_with_its_whole_vector():
    g = np.zeros((2, 12, 2))
    g[0, 3], g[0, 4:] = [3.0, 0.0], [6.0, 0.0]  # two moving frames: one saccade of 6 px
    g[0, 9:] = [6.0, 5.0]  # a second saccade
    c = saccade_covariates(g)
    assert np.flatnonzero(c["onset"][0]).tolist() == [3, 9]
    # frame 6 is 3 after the first onset and 3 before the second: the past one on a tie
    assert c["lag"][0].tolist() == [-3, -2, -1, 0, 1, 2, 3, -2, -1, 0, 1, 2]
    np.testing.assert_array_equal(c["vector"][0, 6], [6.0, 0.0])
    np.testing.assert_array_equal(c["vector"][0, 7], [0.0, 5.0])
    # a trial without saccades: no onset, infinite lags, zero vectors
    assert not c["onset"][1].any() and np.isinf(c["lag"][1]).all()
    np.testing.assert_array_equal(c["vector"][1], 0.0)


def test_jitter_below_the_threshold_is_fixation():
    rng = np.random.default_rng(0)
    g = rng.normal(0, 0.2, (3, 50, 2))
    assert not saccade_covariates(g, threshold=2.0)["onset"].any()


@pytest.mark.parametrize(
    "gaze, threshold, field",
    [
        (np.zeros((2, 5)), 2.0, "gaze"),
        (np.full((1, 4, 2), np.nan), 2.0, "gaze"),
        (np.zeros((1, 4, 2)), 0.0, "saccade_threshold"),
    ],
)
def test_bad_traces_are_data_errors(gaze, threshold, field):
    with pytest.raises(pt.DataError, match=field):
        saccade_covariates(gaze, threshold)
