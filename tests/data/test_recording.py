import numpy as np
import pytest

import probtwin as pt
from probtwin.data.arrays import TrialArray


def make(rng, n=20, neurons=3, **kw):
    args = dict(
        behavior=rng.normal(size=(n, 3)),
        gaze=rng.normal(size=(n, 2)),
        neuron_coords=rng.normal(size=(neurons, 3)),
        neuron_area=["V1"] * neurons,
        stimulus_ids=np.repeat(np.arange(n // 2), 2),
    )
    args.update(kw)
    return pt.Recording(rng.normal(size=(n, 1, 6, 7)), rng.poisson(2, size=(n, neurons)).astype(float), **args)


def test_image_recording_properties(rng):
    rec = make(rng)
    assert (rec.n_trials, rec.n_neurons, rec.n_frames) == (20, 3, None)
    assert rec.stimulus_kind == "images" and rec.stimulus_shape == (1, 6, 7)
    assert rec.has_repeats
    np.testing.assert_array_equal(rec.neuron_ids, np.arange(3))
    text = repr(rec)
    assert "20 trials x 3 neurons" in text and "train 16, validation 2, test 2" in text


def test_video_and_time_series_recordings(rng):
    video = pt.Recording(
        rng.normal(size=(4, 1, 5, 6, 6)),
        rng.normal(size=(4, 5, 2)),
        behavior=rng.normal(size=(4, 5, 2)),
        gaze=rng.normal(size=(4, 5, 2)),
    )
    assert video.stimulus_kind == "videos" and video.n_frames == 5
    task = pt.Recording(rng.normal(size=(6, 8, 4)), rng.poisson(1, size=(6, 8, 3)), behavior=rng.normal(size=(6, 8, 2)))
    assert task.stimulus_kind == "task" and task.n_frames == 8
    no_input = pt.Recording(None, rng.poisson(1, size=(6, 8, 3)))
    assert no_input.stimuli is None and no_input.stimulus_kind is None


def test_negative_responses_are_legal(rng):
    rec = pt.Recording(rng.normal(size=(10, 1, 4, 4)), -np.abs(rng.normal(size=(10, 2))))
    assert np.asarray(rec.responses).max() < 0


def test_split_is_a_view_with_trial_index(rng):
    stimuli = rng.normal(size=(20, 1, 6, 7))
    responses = rng.normal(size=(20, 3))
    rec = pt.Recording(stimuli, responses, stimulus_ids=np.repeat(np.arange(10), 2))
    train = rec.split("train")
    assert isinstance(train.stimuli, TrialArray)
    assert train.stimuli.source is stimuli and train.responses.source is responses  # nothing copied
    np.testing.assert_array_equal(np.asarray(train.responses), responses[train.trial_index])
    np.testing.assert_array_equal(train.stimuli[3], stimuli[train.trial_index[3]])
    assert set(train.tiers) == {"train"}
    # a view of a view: trial_index is relative to its parent, data still right
    sub = train.subset([1, 0])
    np.testing.assert_array_equal(sub.trial_index, [1, 0])
    np.testing.assert_array_equal(np.asarray(sub.responses), responses[train.trial_index[[1, 0]]])
    np.testing.assert_array_equal(sub.stimulus_ids, rec.stimulus_ids[train.trial_index[[1, 0]]])


def test_default_split_is_deterministic_and_keeps_repeats_together(rng):
    ids = rng.integers(0, 50, size=300)
    a = pt.Recording(rng.normal(size=(300, 1, 3, 3)), rng.normal(size=(300, 2)), stimulus_ids=ids)
    b = pt.Recording(rng.normal(size=(300, 1, 3, 3)), rng.normal(size=(300, 2)), stimulus_ids=ids)
    np.testing.assert_array_equal(a.tiers, b.tiers)
    for s in np.unique(ids):
        assert len(set(a.tiers[ids == s])) == 1
    # the documented rule: RandomState(0).permutation over sorted unique ids, 80/10/10
    unique = np.unique(ids)
    order = np.random.RandomState(0).permutation(len(unique))
    n_train = int(np.floor(0.8 * len(unique)))
    assert set(a.tiers[np.isin(ids, unique[order[:n_train]])]) == {"train"}
    assert set(a.tiers[np.isin(ids, unique[order[-(len(unique) - int(np.floor(0.9 * len(unique)))) :]])]) == {"test"}


def test_memmap_is_kept_as_is(tmp_path, rng):
    arr = np.lib.format.open_memmap(tmp_path / "stim.npy", mode="w+", dtype=np.float32, shape=(12, 1, 4, 4))
    arr[:] = rng.normal(size=arr.shape)
    arr.flush()
    mm = np.load(tmp_path / "stim.npy", mmap_mode="r")
    rec = pt.Recording(mm, rng.normal(size=(12, 2)))
    assert rec.stimuli.source is mm
    np.testing.assert_array_equal(np.asarray(rec.split("train").stimuli), mm[rec.split("train").trial_index])


def test_memmap_with_nan_is_found_in_chunks(tmp_path):
    arr = np.lib.format.open_memmap(tmp_path / "r.npy", mode="w+", dtype=np.float64, shape=(50, 3))
    arr[:] = 1.0
    arr[37, 2] = np.nan
    arr.flush()
    with pytest.raises(pt.DataError, match=r"responses.*\(37, 2\)"):
        pt.Recording(np.zeros((50, 1, 2, 2)), np.load(tmp_path / "r.npy", mmap_mode="r"))


def test_split_errors(rng):
    rec = make(rng)
    with pytest.raises(pt.DataError, match="tier"):
        rec.split("training")
    small = pt.Recording(np.zeros((3, 1, 2, 2)), np.ones((3, 1)), tiers=["train", "train", "test"])
    with pytest.raises(pt.DataError, match="no 'validation' trials"):
        small.split("validation")
    with pytest.raises(pt.DataError, match="empty selection"):
        small.subset(np.zeros(3, bool))


@pytest.mark.parametrize(
    "kwargs, field, message",
    [
        (dict(responses=np.ones((5, 2)), stimuli=np.ones((6, 1, 2, 2))), "stimuli", "5 trials"),
        (dict(responses=np.ones((5,))), "responses", "2-D or 3-D"),
        (dict(responses=np.ones((0, 3)), stimuli=np.ones((0, 1, 2, 2))), "responses", "at least one trial"),
        (dict(responses=np.ones((5, 0))), "responses", "at least one neuron"),
        (dict(responses=np.array([["a"] * 2] * 5)), "responses", "numeric"),
        (dict(responses=np.ones((5, 2)) * 1j), "responses", "numeric"),
        (dict(responses=np.r_[np.ones((4, 2)), [[np.nan, 1]]]), "responses", "finite"),
        (dict(stimuli=np.full((5, 1, 2, 2), np.inf)), "stimuli", "finite"),
        (dict(stimuli=np.ones((5, 2, 2))), "stimuli", "task variables"),
        (dict(behavior=np.ones((4, 3))), "behavior", "5 trials"),
        (dict(gaze=np.ones((5, 3))), "gaze", "2 coordinates"),
        (dict(neuron_ids=[1, 1]), "neuron_ids", "unique"),
        (dict(neuron_coords=np.ones((3, 3))), "neuron_coords", r"shape \(2, 2\)"),
        (dict(neuron_area=["V1"]), "neuron_area", "length 2"),
        (dict(tiers=["train"] * 4 + ["holdout"]), "tiers", "holdout"),
        (dict(tiers=["test"] * 5), "tiers", "empty train tier"),
        (dict(stimulus_ids=[0, 1, 2]), "stimulus_ids", "length 5"),
        (dict(stimulus_ids=[0.5, 1, 2, 3, 4]), "stimulus_ids", "non-integer"),
        (dict(name=""), "name", "non-empty"),
        (dict(trial_info={"cond": [1, 2]}), "trial_info['cond']", "length 5"),
    ],
)
def test_malformed_input_names_the_field(kwargs, field, message):
    args = dict(stimuli=np.ones((5, 1, 2, 2)), responses=np.ones((5, 2)))
    args.update(kwargs)
    stimuli, responses = args.pop("stimuli"), args.pop("responses")
    with pytest.raises(pt.DataError, match=message) as info:
        pt.Recording(stimuli, responses, **args)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_per_frame_mismatches(rng):
    with pytest.raises(pt.DataError) as info:
        pt.Recording(rng.normal(size=(4, 1, 6, 3, 3)), rng.normal(size=(4, 5, 2)))
    assert info.value.field == "stimuli"
    with pytest.raises(pt.DataError) as info:
        pt.Recording(rng.normal(size=(4, 5, 3)), rng.normal(size=(4, 5, 2)), behavior=rng.normal(size=(4, 4, 2)))
    assert info.value.field == "behavior"
    with pytest.raises(pt.DataError) as info:
        pt.Recording(None, rng.normal(size=(4, 2)))
    assert info.value.field == "stimuli"
