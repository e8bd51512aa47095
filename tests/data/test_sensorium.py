import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import probtwin as pt
from probtwin.data.arrays import TrialStack
from probtwin.data.padding import hold_padding


def write_static(root: Path, rng, n=12, neurons=5, tiers=None):
    """A small Sensorium 2022 static folder, as the release lays it out."""
    data = {}
    for field, shape in (("images", (1, 6, 8)), ("responses", (neurons,)), ("behavior", (3,)), ("pupil_center", (2,))):
        (root / "data" / field).mkdir(parents=True)
        data[field] = rng.normal(size=(n, *shape)).astype(np.float32)
        for i in range(n):
            np.save(root / "data" / field / f"{i}.npy", data[field][i])
    (root / "meta" / "trials").mkdir(parents=True)
    (root / "meta" / "neurons").mkdir(parents=True)
    tiers = tiers if tiers is not None else np.array(["train"] * 8 + ["validation"] * 2 + ["test", "final_test"])
    np.save(root / "meta" / "trials" / "tiers.npy", tiers)
    np.save(root / "meta" / "trials" / "frame_image_id.npy", np.arange(n) % 6)
    np.save(root / "meta" / "neurons" / "cell_motor_coordinates.npy", rng.normal(size=(neurons, 3)))
    np.save(root / "meta" / "neurons" / "area.npy", np.array(["V1"] * neurons))
    np.save(root / "meta" / "neurons" / "unit_ids.npy", np.arange(100, 100 + neurons))
    return data, tiers


def write_video(root: Path, rng, lengths=(7, 7, 7, 7), neurons=4):
    data = {k: [] for k in ("videos", "responses", "behavior", "pupil_center")}
    for field in data:
        (root / "data" / field).mkdir(parents=True)
    for i, f in enumerate(lengths):
        arrays = {
            "videos": rng.normal(size=(5, 6, f)),
            "responses": rng.normal(size=(neurons, f)),
            "behavior": rng.normal(size=(2, f)),
            "pupil_center": rng.normal(size=(2, f)),
        }
        for field, a in arrays.items():
            np.save(root / "data" / field / f"{i}.npy", a)
            data[field].append(a)
    (root / "meta" / "trials").mkdir(parents=True)
    np.save(root / "meta" / "trials" / "tiers.npy", np.array(["train", "train", "oracle", "live_test_main"]))
    return data


def zip_folder(folder: Path, target: Path, prefix: str) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for file in sorted(folder.rglob("*.npy")):
            zf.write(file, prefix + str(file.relative_to(folder)))
    return target


def check_static(rec, data, tiers):
    assert isinstance(rec.stimuli.source, TrialStack)  # lazy
    assert rec.stimuli.shape == (12, 1, 6, 8) and rec.responses.shape == (12, 5)
    np.testing.assert_array_equal(np.asarray(rec.stimuli), data["images"])
    np.testing.assert_array_equal(rec.responses[[3, 1]], data["responses"][[3, 1]])
    np.testing.assert_array_equal(np.asarray(rec.behavior), data["behavior"])
    np.testing.assert_array_equal(np.asarray(rec.gaze), data["pupil_center"])
    assert rec.tiers.tolist() == ["train"] * 8 + ["validation"] * 2 + ["test", "test"]
    assert rec.trial_info["sensorium_tier"].tolist() == tiers.tolist()
    np.testing.assert_array_equal(rec.stimulus_ids, np.arange(12) % 6)
    np.testing.assert_array_equal(rec.neuron_ids, np.arange(100, 105))
    assert rec.neuron_coords.shape == (5, 3) and set(rec.neuron_area) == {"V1"}


def test_static_folder_and_zip(tmp_path, rng):
    folder = tmp_path / "static1-2-3"
    data, tiers = write_static(folder, rng)
    check_static(pt.load_sensorium(folder), data, tiers)
    archive = zip_folder(folder, tmp_path / "static1-2-3.zip", "static1-2-3/")
    rec = pt.load_sensorium(archive)
    check_static(rec, data, tiers)
    assert rec.name == "static1-2-3"
    check_static(pt.load_sensorium(zip_folder(folder, tmp_path / "flat.zip", "")), data, tiers)
    train = rec.split("train")
    np.testing.assert_array_equal(np.asarray(train.stimuli), data["images"][:8])


def test_static_tier_selection_and_errors(tmp_path, rng):
    folder = tmp_path / "s"
    write_static(folder, rng)
    kept = pt.load_sensorium(folder, tiers=("train", "validation"))
    assert kept.n_trials == 10
    with pytest.raises(pt.DataError, match="tiers"):
        pt.load_sensorium(folder, tiers=("oracle",))
    with pytest.raises(pt.DataError, match="frames"):
        pt.load_sensorium(folder, frames=3)
    (folder / "data" / "responses" / "4.npy").unlink()
    with pytest.raises(pt.DataError, match=r"missing \[4\]"):
        pt.load_sensorium(folder)


def test_unknown_tier_and_bad_paths(tmp_path, rng):
    folder = tmp_path / "u"
    write_static(folder, rng, tiers=np.array(["train"] * 11 + ["holdout"]))
    with pytest.raises(pt.DataError, match="holdout"):
        pt.load_sensorium(folder)
    with pytest.raises(pt.DataError, match="path"):
        pt.load_sensorium(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(pt.DataError, match="data/ and meta/"):
        pt.load_sensorium(tmp_path / "empty")


def test_nan_trial_is_refused_when_read(tmp_path, rng):
    folder = tmp_path / "n"
    write_static(folder, rng)
    np.save(folder / "data" / "responses" / "7.npy", np.full(5, np.nan, dtype=np.float32))
    rec = pt.load_sensorium(folder)
    np.asarray(rec.responses[:7])
    with pytest.raises(pt.DataError, match=r"responses\[7\]"):
        np.asarray(rec.responses)


def test_video_folder(tmp_path, rng):
    folder = tmp_path / "dynamic1"
    data = write_video(folder, rng)
    rec = pt.load_sensorium(folder)
    assert rec.stimulus_kind == "videos" and rec.stimuli.shape == (4, 1, 7, 5, 6)
    assert rec.responses.shape == (4, 7, 4) and rec.behavior.shape == (4, 7, 2) and rec.gaze.shape == (4, 7, 2)
    np.testing.assert_array_equal(rec.stimuli[2][0], np.moveaxis(data["videos"][2], -1, 0))
    np.testing.assert_array_equal(rec.responses[1], data["responses"][1].T)
    assert rec.tiers.tolist() == ["train", "train", "validation", "test"]
    archive = zip_folder(folder, tmp_path / "dynamic1.zip", "dynamic1/")
    np.testing.assert_array_equal(np.asarray(pt.load_sensorium(archive).gaze), np.asarray(rec.gaze))


def test_video_trials_of_unequal_length(tmp_path, rng):
    """Trials of unequal length are padded with NaN to the longest; files padded with NaN keep
    their padding; responses, behaviour and pupil are cut together; ``frames=`` crops."""
    folder = tmp_path / "dyn"
    data = write_video(folder, rng, lengths=(7, 9, 7, 8))
    rec = pt.load_sensorium(folder)
    assert rec.stimuli.shape == (4, 1, 9, 5, 6) and rec.responses.shape == (4, 9, 4)
    assert rec.frame_counts.tolist() == [7, 9, 7, 8] and rec.padded
    np.testing.assert_array_equal(rec.responses[1], data["responses"][1].T)
    np.testing.assert_array_equal(rec.responses[0][:7], data["responses"][0].T)
    assert np.isnan(rec.responses[0][7:]).all() and np.isnan(rec.behavior[3][8:]).all()
    assert np.isnan(rec.stimuli[2][:, 7:]).all()
    assert rec.split("train").frame_counts.tolist() == [7, 9]
    cropped = pt.load_sensorium(folder, frames=6)
    assert cropped.responses.shape == (4, 6, 4) and not cropped.padded
    np.testing.assert_array_equal(cropped.responses[1], data["responses"][1][:, :6].T)
    assert pt.load_sensorium(folder, frames=8).frame_counts.tolist() == [7, 8, 7, 8]
    with pytest.raises(pt.DataError, match="frames"):
        pt.load_sensorium(folder, frames=0)

    # a release that pads its files with NaN (responses past a trial's end), behaviour finite there
    responses = data["responses"][1].copy()
    responses[:, 5:] = np.nan
    np.save(folder / "data" / "responses" / "1.npy", responses)
    rec = pt.load_sensorium(folder)
    assert rec.frame_counts.tolist() == [7, 5, 7, 8]
    np.testing.assert_array_equal(rec.behavior[1], data["behavior"][1].T)  # kept; the trial ends at 5

    # NaN inside a trial, or behaviour missing in a recorded frame: a DataError naming the trial
    responses[:, 2] = np.nan
    np.save(folder / "data" / "responses" / "1.npy", responses)
    with pytest.raises(pt.DataError, match=r"responses\[1\].*inside trial 0, frame 2"):
        np.asarray(pt.load_sensorium(folder).responses)
    np.save(folder / "data" / "responses" / "1.npy", data["responses"][1])
    behavior = data["behavior"][0].copy()
    behavior[:, 3] = np.nan
    np.save(folder / "data" / "behavior" / "0.npy", behavior)
    rec = pt.load_sensorium(folder)
    with pytest.raises(pt.DataError, match="behavior.*frame 3"):  # found when a batch is read
        hold_padding({"responses": np.asarray(rec.responses[[0]]), "behavior": np.asarray(rec.behavior[[0]])})
    shutil.rmtree(folder / "data" / "videos")
    with pytest.raises(pt.DataError, match="neither"):
        pt.load_sensorium(folder)


def test_sensorium_2023_layout_as_published(tmp_path, rng):
    """Tiers 'none' dropped unless asked for, ids from the videos' contents when no id file,
    ``__MACOSX``/``._*`` entries ignored, withheld (all-zero) responses warned about by tier."""
    folder = tmp_path / "dynamic29515-10-12-Video-full"
    write_video(folder, rng, lengths=(7,) * 4)
    np.save(folder / "meta" / "trials" / "tiers.npy", np.array(["train", "none", "oracle", "live_test_main"]))
    shutil.copy(folder / "data" / "videos" / "0.npy", folder / "data" / "videos" / "2.npy")  # a repeat
    np.save(folder / "data" / "responses" / "3.npy", np.zeros((4, 7)))  # withheld
    with pytest.warns(UserWarning, match="'live_test_main'"):
        rec = pt.load_sensorium(folder)
    assert rec.n_trials == 3 and rec.trial_info["sensorium_tier"].tolist() == ["train", "oracle", "live_test_main"]
    assert rec.stimulus_ids[0] == rec.stimulus_ids[1] != rec.stimulus_ids[2]  # trials 0 and 2 show one movie
    with pytest.warns(UserWarning):
        assert pt.load_sensorium(folder, tiers=["train", "none"]).tiers.tolist() == ["train", "train"]
    np.save(folder / "meta" / "trials" / "colorframeprojector_image_id.npy", np.array([5, 6, 7, 8]))
    with pytest.warns(UserWarning):
        assert pt.load_sensorium(folder).stimulus_ids.tolist() == [5, 7, 8]

    archive = tmp_path / "dynamic.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(folder.rglob("*.npy")):
            name = "dynamic29515/" + str(file.relative_to(folder))
            zf.write(file, name)
            zf.writestr("__MACOSX/" + name.replace(file.name, "._" + file.name), b"resource fork")
        zf.writestr("dynamic29515/data/videos/._0.npy", b"resource fork")
    with pytest.warns(UserWarning):
        assert pt.load_sensorium(archive).n_trials == 3

    two = tmp_path / "two"
    for sub in ("dynamicA", "dynamicB"):
        shutil.copytree(folder, two / sub)
    with pytest.raises(pt.DataError, match="dynamicA"):
        pt.load_sensorium(two)
    (two / "__MACOSX").mkdir()
    shutil.rmtree(two / "dynamicB")
    with pytest.warns(UserWarning):
        assert pt.load_sensorium(two).n_trials == 3
    with zipfile.ZipFile(tmp_path / "both.zip", "w") as zf:
        for sub in ("dynamicA", "dynamicB"):
            for file in sorted(folder.rglob("*.npy")):
                zf.write(file, f"{sub}/{file.relative_to(folder)}")
    with pytest.raises(pt.DataError, match="dynamicB"):
        pt.load_sensorium(tmp_path / "both.zip")
