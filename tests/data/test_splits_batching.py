import numpy as np
import pytest

import probtwin as pt
from probtwin.data import TrialBatches, batch_arrays, split_by_repeat, split_by_stimulus, split_consecutive
from probtwin.data.splits import tier_counts


def test_tier_counts():
    assert tier_counts(1200) == (960, 120, 120)
    assert tier_counts(75) == (60, 7, 8)
    assert tier_counts(1) == (1, 0, 0)
    with pytest.raises(pt.DataError, match="fractions"):
        tier_counts(10, (0.5, 0.5, 0.5))


def test_split_by_stimulus_matches_documented_rule():
    ids = np.array([5, 5, 3, 9, 9, 9, 1, 7, 2, 8, 4, 0, 6])
    tiers = split_by_stimulus(ids)
    unique = np.unique(ids)
    order = np.random.RandomState(0).permutation(len(unique))
    expected = {unique[order[k]]: ("train" if k < 8 else "validation" if k < 9 else "test") for k in range(10)}
    assert [expected[i] for i in ids] == tiers.tolist()


def test_split_consecutive():
    tiers = split_consecutive(20)
    assert tiers.tolist() == ["train"] * 16 + ["validation"] * 2 + ["test"] * 2


def test_trial_batches_cover_every_trial_once_per_epoch():
    batches = TrialBatches(23, batch_size=5, seed=3)
    assert len(batches) == 5
    epoch0 = np.concatenate(list(batches.epoch(0)))
    np.testing.assert_array_equal(np.sort(epoch0), np.arange(23))
    np.testing.assert_array_equal(epoch0, np.concatenate(list(TrialBatches(23, 5, seed=3).epoch(0))))
    assert not np.array_equal(epoch0, np.concatenate(list(batches.epoch(1))))
    assert len(TrialBatches(23, 5, drop_last=True)) == 4
    with pytest.raises(pt.DataError, match="batch_size"):
        TrialBatches(10, 0)


def test_batch_arrays(rng):
    rec = pt.Recording(rng.normal(size=(10, 1, 3, 3)), rng.normal(size=(10, 2)), gaze=rng.normal(size=(10, 2)))
    out = batch_arrays(rec.split("train"), np.array([2, 0]))
    assert set(out) == {"stimuli", "responses", "gaze"} and out["stimuli"].dtype == np.float32
    np.testing.assert_allclose(
        out["responses"], np.asarray(rec.responses)[rec.split("train").trial_index[[2, 0]]], rtol=1e-6
    )


def test_split_by_repeat_holds_out_the_last_two_presentations():
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.repeat(np.arange(30), rng.integers(1, 8, 30)))
    tiers = split_by_repeat(ids)
    for s in np.unique(ids):
        rows = np.flatnonzero(ids == s)
        if len(rows) >= 3:
            assert tiers[rows[-1]] == "test" and tiers[rows[-2]] == "validation"
            assert np.all(tiers[rows[:-2]] == "train")
        else:
            assert np.all(tiers[rows] == "train")
