"""Loaders of the real recordings in shared/data, checked against the figures of its README."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

import probtwin as pt
from probtwin.datasets.paths import data_file


def tiers_of(rec):
    return tuple(int(np.sum(rec.tiers == t)) for t in ("train", "validation", "test"))


@pytest.mark.parametrize(
    "session, n_images, n_neurons", [("201025", 1200, 89), ("210224", 800, 67), ("210325", 640, 50)]
)
def test_cowley_v4_sessions(shared_data, session, n_images, n_neurons):
    rec = pt.datasets.cowley_v4(session, root=shared_data, image_size=28, grayscale=True)
    assert rec.stimuli.shape == (n_images, 1, 28, 28) and rec.responses.shape == (n_images, n_neurons)
    assert tiers_of(rec) == (int(0.8 * n_images), n_images // 10, n_images - int(0.8 * n_images) - n_images // 10)
    avg = np.load(shared_data / f"cowley_v4/responses_repeat_averaged_{session}.npy")
    np.testing.assert_array_equal(np.asarray(rec.responses), avg.T)
    # the split is the documented one: RandomState(0) over images
    order = np.random.RandomState(0).permutation(n_images)
    assert set(rec.tiers[order[: int(0.8 * n_images)]]) == {"train"}


def test_cowley_v4_images_are_the_jpegs_in_order(shared_data):
    rec = pt.datasets.cowley_v4("210325", root=shared_data)
    assert rec.stimuli.shape == (640, 3, 112, 112)
    with zipfile.ZipFile(shared_data / "cowley_v4/images_210325.zip") as zf:
        first = np.asarray(Image.open(io.BytesIO(zf.read("image0002.jpg"))).convert("RGB"))
    np.testing.assert_array_equal(rec.stimuli[1], first.transpose(2, 0, 1).astype(np.float32))


def test_cowley_v4_raw_trials_match_the_averages_and_the_noise_ceiling(shared_data):
    raw = pt.datasets.cowley_v4("210325", root=shared_data, trials="raw")
    avg = pt.datasets.cowley_v4("210325", root=shared_data)
    assert raw.n_trials == 4840 and raw.has_repeats
    counts = np.bincount(raw.stimulus_ids)
    assert counts.min() == 6 and counts.max() == 10  # 6 to 10 repeats per image
    y = np.asarray(raw.responses)
    assert np.array_equal(y, np.round(y))  # spike counts
    means = np.stack([y[raw.stimulus_ids == s].mean(0) for s in range(640)])
    np.testing.assert_allclose(means, np.asarray(avg.responses))
    for s in range(640):  # same image, same tier in both views
        assert set(raw.tiers[raw.stimulus_ids == s]) == {avg.tiers[s]}
    np.testing.assert_array_equal(raw.stimuli[5], avg.stimuli[raw.stimulus_ids[5]])
    # README: split-half noise ceiling, Spearman-Brown corrected, median over neurons 0.76
    ceiling = pt.metrics.split_half_reliability(y, raw.stimulus_ids)
    assert np.median(ceiling) == pytest.approx(0.76, abs=0.02)
    with pytest.raises(FileNotFoundError, match="responses_raw_201025.npy"):
        pt.datasets.cowley_v4("201025", root=shared_data, trials="raw")


def test_cowley_v4_loads_any_session_whose_files_exist(shared_data, tmp_path):
    folder = tmp_path / "cowley_v4"
    folder.mkdir()
    for kind, ext in (("images", "zip"), ("responses_repeat_averaged", "npy")):
        (folder / f"{kind}_999001.{ext}").symlink_to(shared_data / "cowley_v4" / f"{kind}_201025.{ext}")
    other = pt.datasets.cowley_v4("999001", root=tmp_path, image_size=28)
    same = pt.datasets.cowley_v4("201025", root=shared_data, image_size=28)
    assert other.name == "cowley_v4_999001"
    np.testing.assert_array_equal(np.asarray(other.responses), np.asarray(same.responses))
    with pytest.raises(FileNotFoundError, match="images_999002.zip"):
        pt.datasets.cowley_v4("999002", root=tmp_path)


def test_tang_v1(shared_data):
    rec = pt.datasets.tang_v1(root=shared_data)
    assert rec.stimuli.shape == (9500, 1, 40, 40) and rec.responses.shape == (9500, 4)
    assert rec.neuron_ids.tolist() == ["neu75", "neu255", "neu381", "neu504"]
    assert tiers_of(rec) == (7600, 950, 950)
    full = pt.datasets.tang_v1(root=shared_data, crop=False, invert=True)
    np.testing.assert_array_equal(1 - np.asarray(full.stimuli[:3])[:, :, 60:100, 60:100], rec.stimuli[:3])


def test_allen_v1_uses_the_source_test_scenes(shared_data):
    rec = pt.datasets.allen_v1(root=shared_data)
    assert rec.stimuli.shape == (118, 1, 31, 31) and rec.responses.shape == (118, 212)
    test_idx = np.load(shared_data / "allen_v1/allen_natscenes_118x212_mean.npz")["test_scene_idx"]
    np.testing.assert_array_equal(np.flatnonzero(rec.tiers == "test"), np.sort(test_idx))
    assert tiers_of(rec) == (90, 10, 18)


@pytest.mark.parametrize("session, windows", [(0, 75), (1, 113)])
def test_dad_m1_windows(shared_data, session, windows):
    rec = pt.datasets.dad_m1("chewie", session=session, root=shared_data)
    assert rec.responses.shape == (windows, 16, 71) and rec.behavior.shape == (windows, 16, 2)
    assert rec.stimuli.shape == (windows, 16, 4) and rec.stimulus_kind == "task"
    mat = loadmat(shared_data / "dad_m1/chewie_demo.mat")
    y, x, t = (mat[k + ("tr" if session == 0 else "te")] for k in "YXT")
    np.testing.assert_array_equal(np.asarray(rec.responses).reshape(-1, 71), y[: windows * 16])
    np.testing.assert_array_equal(np.asarray(rec.behavior).reshape(-1, 2), x[: windows * 16])
    np.testing.assert_array_equal(np.asarray(rec.stimuli).argmax(-1).reshape(-1), t[: windows * 16, 0])
    assert rec.tiers.tolist() == list(pt.data.split_consecutive(windows))
    assert rec.trial_info["start_bin"][1] == 16


def test_dad_m1_rates_of_mihi_are_turned_back_into_counts(tmp_path, rng):
    counts = rng.poisson(1.0, size=(40, 5))
    (tmp_path / "dad_m1").mkdir()
    arrays = {
        "Ytr": counts * 5.0,
        "Xtr": rng.normal(size=(40, 2)),
        "Ttr": rng.integers(0, 4, (40, 1)),
        "Yte": counts * 5.0 + 0.5,
        "Xte": rng.normal(size=(40, 2)),
        "Tte": rng.integers(0, 4, (40, 1)),
    }
    savemat(tmp_path / "dad_m1/mihi_demo.mat", arrays)
    rec = pt.datasets.dad_m1("mihi", root=tmp_path, window=8)
    np.testing.assert_array_equal(np.asarray(rec.responses).reshape(-1, 5), counts)
    with pytest.raises(pt.DataError, match="non-integer"):
        pt.datasets.dad_m1("mihi", session=1, root=tmp_path, window=8)
    with pytest.raises(pt.DataError, match="window"):
        pt.datasets.dad_m1("mihi", root=tmp_path, window=0)


def test_nategh_perisaccadic_sessions(shared_data):
    sessions = pt.datasets.nategh_perisaccadic(root=shared_data)
    assert len(sessions) == 10  # 11 units, two of them recorded on 181024
    for rec in sessions:
        assert 585 <= rec.n_trials <= 921 and rec.responses.shape[1] == 200
        rate = np.asarray(rec.responses).sum(1).mean(0) / 2.0  # spikes per second over 2 s
        assert np.all((rate > 3.5) & (rate < 15))  # README: 4 to 14 spikes/s
    pair = pt.datasets.nategh_perisaccadic("181024", root=shared_data)
    assert pair.neuron_ids.tolist() == ["181024051", "181024081"]
    one = pt.datasets.nategh_perisaccadic("181024081", root=shared_data, bin_ms=20, window_ms=(-200, 400))
    mat = loadmat(shared_data / "nategh_perisaccadic/181024081.mat")
    np.testing.assert_array_equal(
        np.asarray(one.responses)[:, :, 0], mat["resp"][:, 800:1400].reshape(-1, 30, 20).sum(2)
    )
    # probe fractions: location of the code at every millisecond, averaged over the bin
    code = mat["stim"][:, 800:1400].astype(int)
    expected = np.zeros((len(code), 1, 30, 9, 9))
    t, ms = np.nonzero(code)
    np.add.at(expected, (t, 0, ms // 20, (code[t, ms] - 1) % 9, (code[t, ms] - 1) // 9), 1 / 20)  # MATLAB ind2sub
    np.testing.assert_allclose(np.asarray(one.stimuli), expected, atol=1e-6)
    np.testing.assert_array_equal(one.trial_info["saccade_onset"], 10.0)  # 200 ms into the window, 20 ms bins
    with pytest.raises(pt.DataError, match="window_ms"):
        pt.datasets.nategh_perisaccadic("181024", root=shared_data, bin_ms=7)
    with pytest.raises(pt.DataError, match="session"):
        pt.datasets.nategh_perisaccadic("990101", root=shared_data)


def test_cowley_zip_with_a_folder_prefix_and_data_root_resolution(tmp_path, monkeypatch, rng):
    (tmp_path / "cowley_v4").mkdir()
    pixels = rng.integers(0, 255, size=(3, 8, 8, 3)).astype(np.uint8)
    with zipfile.ZipFile(tmp_path / "cowley_v4/images_210224.zip", "w") as zf:
        for i in (2, 0, 1):  # written out of order, under a folder
            buf = io.BytesIO()
            Image.fromarray(pixels[i]).save(buf, format="PNG")
            zf.writestr(f"some/folder/image{i + 1:04d}.jpg", buf.getvalue())
        zf.writestr("some/folder/readme.txt", "not an image")
    np.save(tmp_path / "cowley_v4/responses_repeat_averaged_210224.npy", rng.normal(size=(2, 3)))
    monkeypatch.setenv("PROBTWIN_DATA", str(tmp_path))
    rec = pt.datasets.cowley_v4("210224")
    np.testing.assert_array_equal(np.asarray(rec.stimuli), pixels.transpose(0, 3, 1, 2).astype(np.float32))
    with pytest.raises(FileNotFoundError, match="cowley_v4/images_201025.zip"):
        pt.datasets.cowley_v4("201025", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="tang_v1"):
        data_file("tang_v1/tang_monkeyA_pattern9500_4neurons.npz", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="images_999999.zip"):
        pt.datasets.cowley_v4("999999")


def test_resize_images_keeps_the_mean():
    img = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 112, 112)).astype(np.float32)
    small = pt.datasets.resize_images(img, 56)
    assert small.shape == (2, 3, 56, 56)
    np.testing.assert_allclose(small.mean((2, 3)), img.mean((2, 3)), rtol=1e-2)
    flat = np.full((1, 1, 10, 10), 7.5, np.float32)
    np.testing.assert_allclose(pt.datasets.resize_images(flat, (4, 6)), 7.5, rtol=1e-6)
