import numpy as np
import pytest

import probtwin as pt


def assert_same(a, b):
    for field in ("stimuli", "responses", "behavior", "gaze"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=field)
            assert np.asarray(x).dtype == np.asarray(y).dtype, field
    for field in ("tiers", "stimulus_ids", "neuron_ids"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    for field in ("neuron_area", "neuron_coords"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
    assert a.trial_info.keys() == b.trial_info.keys()
    for key in a.trial_info:
        np.testing.assert_array_equal(a.trial_info[key], b.trial_info[key])
    assert a.name == b.name


def test_round_trip_images_with_everything(tmp_path, rng):
    rec = pt.Recording(
        rng.normal(size=(12, 3, 5, 6)).astype(np.float32),
        rng.poisson(2.0, size=(12, 4)).astype(np.float64),
        behavior=rng.normal(size=(12, 3)),
        gaze=rng.normal(size=(12, 2)),
        neuron_coords=rng.normal(size=(4, 3)),
        neuron_area=["V1", "V1", "LM", "AL"],
        neuron_ids=["u1", "u2", "u3", "u4"],
        stimulus_ids=np.repeat(np.arange(6), 2),
        trial_info={"condition": np.arange(12) % 3, "label": np.array(list("abcdefghijkl"))},
        name="mouse-1",
    )
    assert_same(rec, pt.load_nwb(rec.to_nwb(tmp_path / "a.nwb")))


def test_round_trip_videos_and_time_series(tmp_path, rng):
    video = pt.Recording(
        rng.normal(size=(5, 1, 4, 3, 3)),
        rng.normal(size=(5, 4, 2)),
        behavior=rng.normal(size=(5, 4, 2)),
        gaze=rng.normal(size=(5, 4, 2)),
    )
    assert_same(video, pt.load_nwb(video.to_nwb(tmp_path / "v.nwb")))
    task = pt.Recording(
        rng.normal(size=(6, 8, 4)),
        rng.poisson(1, size=(6, 8, 3)),
        behavior=rng.normal(size=(6, 8, 2)),
        tiers=pt.data.split_consecutive(6),
    )
    back = pt.load_nwb(task.to_nwb(tmp_path / "t.nwb"))
    assert_same(task, back)
    bare = pt.Recording(None, rng.poisson(1, size=(6, 8, 3)))
    assert_same(bare, pt.load_nwb(bare.to_nwb(tmp_path / "b.nwb")))


def test_a_view_round_trips_as_its_own_recording(tmp_path, rng):
    rec = pt.Recording(rng.normal(size=(20, 1, 4, 4)), rng.normal(size=(20, 2)))
    view = rec.subset(np.arange(0, 20, 3))
    back = pt.load_nwb(view.to_nwb(tmp_path / "view.nwb"))
    np.testing.assert_array_equal(np.asarray(back.responses), np.asarray(rec.responses)[::3])
    np.testing.assert_array_equal(back.tiers, rec.tiers[::3])


def test_not_an_nwb_file(tmp_path):
    bad = tmp_path / "x.nwb"
    bad.write_text("not hdf5")
    with pytest.raises(pt.DataError, match="NWB"):
        pt.load_nwb(bad)
    with pytest.raises(pt.DataError, match="no file"):
        pt.load_nwb(tmp_path / "missing.nwb")


def test_a_file_that_fails_to_read_is_closed(tmp_path):
    import h5py

    bad = tmp_path / "plain.h5"
    with h5py.File(bad, "w") as f:  # HDF5, but not NWB: opens, then fails to read
        f["x"] = np.arange(3)
    with pytest.raises(pt.DataError, match="NWB") as info:
        pt.load_nwb(bad)
    assert info.value.__traceback__ is not None  # the frames (and their handles) are still alive here
    with h5py.File(bad, "w") as f:  # truncating fails while any handle is still open
        f["y"] = np.arange(2)
