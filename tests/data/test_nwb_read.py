"""load_nwb on files probtwin did not write: real files of three other writers, and a file written
here with pynwb holding every part the reader takes (images, index series, behaviour, eye
tracking, electrodes)."""

from datetime import datetime, timezone

import numpy as np
import pytest

import probtwin as pt

pynwb = pytest.importorskip("pynwb")

REAL = "nwb_real"


def units_spikes(path):
    """Each unit's spike times, straight from pynwb."""
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        units = io.read().units
        return [np.asarray(units.get_unit_spike_times(i)) for i in range(len(units))]


def direct_counts(spikes, starts, length, bin_size):
    """Counts in half-open frames [lo, hi); a spike within 1 ns below an edge (where the edge's
    floating-point sum rounds past the true one) belongs to the frame the edge opens."""
    frames = int(round(length / bin_size))
    out = np.zeros((len(starts), frames, len(spikes)))
    for t, start in enumerate(starts):
        for f in range(frames):
            lo, hi = start + f * bin_size - 1e-9, start + (f + 1) * bin_size - 1e-9
            out[t, f] = [((s >= lo) & (s < hi)).sum() for s in spikes]
    return out


# ----------------------------------------------------------------------------------- real files
def test_dandi_alm_session_by_an_event_of_each_trial(shared_data):
    path = shared_data / REAL / "sub-anm369963_ses-20170228.nwb"
    with pytest.raises(pt.DataError, match=r"window.*stop_time NaN in 178.*'trials' \(178 rows.*cue_start_time"):
        pt.load_nwb(path)
    rec = pt.load_nwb(path, window=("cue_start_time", -1.0, 1.0), bin_size=0.1)
    assert (rec.n_trials, rec.n_frames, rec.n_neurons) == (178, 20, 1)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        trials = io.read().trials.to_dataframe()
    # this file's event times are from each trial's start: the reader finds that out
    cue = trials.start_time.to_numpy() + trials.cue_start_time.to_numpy()
    np.testing.assert_allclose(rec.trial_info["window_start"], cue - 1.0)
    expected = direct_counts(units_spikes(path), cue - 1.0, 2.0, 0.1)
    np.testing.assert_array_equal(np.asarray(rec.responses), expected)
    assert expected.sum() > 100
    np.testing.assert_array_equal(rec.trial_info["type"], trials["type"].to_numpy().astype(str))
    assert rec.neuron_area[0].startswith("brain_region: ALM")
    # the trial type as task variables (one-hot), lick events counted per frame as behaviour
    task = pt.load_nwb(path, window=(0.0, 6.0), bin_size=0.5, task=["type"], behavior=["lick_left_times"])
    x = np.asarray(task.stimuli)
    assert x.shape == (178, 12, 2)
    np.testing.assert_array_equal(x[:, 0, 1], trials["type"].to_numpy() == "lick right")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        licks = np.asarray(io.read().acquisition["lick_times"]["lick_left_times"].timestamps[:])
    starts = trials.start_time.to_numpy()
    np.testing.assert_array_equal(np.asarray(task.behavior), direct_counts([licks], starts, 6.0, 0.5))


def test_pynapple_phy_units_over_an_epoch(shared_data):
    path = shared_data / REAL / "pynapple_phy_A8604-211122.nwb"
    rec = pt.load_nwb(path, intervals="epochs", bin_size=1.0)
    assert (rec.n_trials, rec.n_frames, rec.n_neurons) == (1, 1087, 3)
    np.testing.assert_array_equal(np.asarray(rec.responses), direct_counts(units_spikes(path), [0.0], 1087.0, 1.0))
    assert rec.trial_info["tags"].tolist() == ["wake"]
    # epochs cut into trials of the user's own start times
    starts = np.arange(0.0, 600.0, 30.0)
    short = pt.load_nwb(path, intervals=starts, window=(0.0, 30.0), bin_size=0.5)
    np.testing.assert_array_equal(np.asarray(short.responses), direct_counts(units_spikes(path), starts, 30.0, 0.5))
    with pytest.raises(pt.DataError, match=r"stimuli.*bin_size=.*'epochs' \(1 rows"):
        pt.load_nwb(path)


def test_neuroconv_calcium_traces(shared_data):
    path = shared_data / REAL / "neuroconv_ophys_nwb_test.nwb"
    with pytest.raises(pt.DataError, match=r"intervals.*interval tables: none.*'RoiResponseSeries' \(calcium"):
        pt.load_nwb(path)
    with pytest.raises(pt.DataError, match=r"responses.*no single source.*'Neuropil'"):
        pt.load_nwb(path, intervals=np.arange(0.0, 20.0, 2.0), window=(0.0, 2.0), bin_size=0.5)
    rec = pt.load_nwb(
        path, intervals=np.arange(0.0, 20.0, 2.0), window=(0.0, 2.0), bin_size=0.5, responses="Deconvolved"
    )
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        series = io.read().processing["ophys"]["Fluorescence"]["Deconvolved"]
        traces, times = np.asarray(series.data[:], dtype=float), np.asarray(series.get_timestamps())
        masks = np.asarray(series.rois.table["image_mask"].data[:])
    y = np.asarray(rec.responses)
    assert y.shape == (10, 4, 15)
    for t in range(10):
        for f in range(4):
            lo = 2.0 * t + 0.5 * f
            inside = (times >= lo - 1e-9) & (times < lo + 0.5 - 1e-9)
            np.testing.assert_allclose(y[t, f], traces[inside].mean(0))
    # ROI centres: centroids of the image masks, (x, y) in pixels
    ys, xs = np.nonzero(masks[4])
    weights = masks[4][ys, xs]
    np.testing.assert_allclose(rec.neuron_coords[4], [np.average(xs, weights=weights), np.average(ys, weights=weights)])
    assert set(rec.neuron_area) == {"unknown"}


# ------------------------------------------------------------------------------ a lab's own file
def write_lab_file(path, rng):
    """A session as another lab would write it: units on electrodes, trials with an absolute event
    column, an image series shown at each trial, an index series over an image set, running,
    pupil and eye position."""
    from pynwb import NWBFile, TimeSeries
    from pynwb.base import Images
    from pynwb.behavior import BehavioralTimeSeries, EyeTracking, PupilTracking, SpatialSeries
    from pynwb.image import GrayscaleImage, ImageSeries, IndexSeries

    nwb = NWBFile("a lab", "lab-1", datetime(2024, 1, 1, tzinfo=timezone.utc), session_id="lab-session")
    device = nwb.create_device("probe")
    groups = [nwb.create_electrode_group(f"shank{k}", "shank", area, device) for k, area in enumerate(["VISp", "VISl"])]
    for e in range(4):
        nwb.add_electrode(x=float(e), y=2.0 * e, z=0.0, location=["VISp", "VISl"][e // 2], group=groups[e // 2])
    starts = 2.0 * np.arange(12) + 1.0
    stops = starts + np.where(np.arange(12) % 3 == 2, 0.75, 1.0)  # every third trial shorter
    nwb.add_trial_column("go_cue_time", "go cue (s)")
    nwb.add_trial_column("image_index", "image shown")
    nwb.add_trial_column("condition", "condition")
    nwb.add_trial_column("split", "tier")
    nwb.add_trial_column("target_xy", "a position per trial: not one label per row")
    for t in range(12):
        nwb.add_trial(
            start_time=starts[t],
            stop_time=stops[t],
            go_cue_time=starts[t] + 0.2,
            image_index=t % 4,
            condition="ab"[t % 2],
            split=["train", "train", "validation", "test"][t % 4],
            target_xy=[float(t), 1.0],
        )
    spikes = [np.sort(rng.uniform(0, 30, size=n)) for n in (50, 200, 120)]
    for u, times in enumerate(spikes):
        nwb.add_unit(spike_times=times, electrodes=[u, u + 1])
    images = rng.integers(0, 255, size=(4, 6, 5)).astype(np.uint8)
    nwb.add_stimulus(ImageSeries(name="natural_images", data=images[np.arange(12) % 4], unit="n.a.", timestamps=starts))
    library = Images(name="image_set", images=[GrayscaleImage(name=f"img{k}", data=images[k]) for k in range(4)])
    nwb.add_stimulus_template(library)
    nwb.add_stimulus(
        IndexSeries(
            name="shown",
            data=(np.arange(12) % 4).astype(np.uint32),
            indexed_images=library,
            timestamps=starts,
            unit="N/A",
        )
    )
    behavior = nwb.create_processing_module("behavior", "behaviour")
    t = np.arange(0, 30, 0.01)
    behavior.add(BehavioralTimeSeries(time_series=TimeSeries(name="running", data=np.sin(t), unit="m/s", timestamps=t)))
    behavior.add(PupilTracking(time_series=TimeSeries(name="pupil_radius", data=t / 30, unit="mm", rate=100.0)))
    eye = np.stack([np.cos(t), np.sin(t)], axis=1)
    behavior.add(EyeTracking(spatial_series=SpatialSeries(name="eye", data=eye, reference_frame="screen", rate=100.0)))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return {"spikes": spikes, "images": images, "starts": starts, "stops": stops, "t": t}


@pytest.fixture
def lab_file(tmp_path, rng):
    path = tmp_path / "lab.nwb"
    return path, write_lab_file(path, rng)


def test_images_from_the_file_and_everything_else(lab_file):
    path, truth = lab_file
    with pytest.warns(UserWarning, match=r"columns \['target_xy'\] are not one number or label per row"):
        rec = pt.load_nwb(
            path,
            window=(0.0, 0.5),
            stimuli="natural_images",
            behavior=["running", "pupil_radius"],
            gaze="eye",
            tiers="split",
        )
    assert rec.name == "lab-session" and rec.stimulus_kind == "images"
    np.testing.assert_array_equal(np.asarray(rec.stimuli)[:, 0], truth["images"][np.arange(12) % 4])
    np.testing.assert_array_equal(
        np.asarray(rec.responses), direct_counts(truth["spikes"], truth["starts"], 0.5, 0.5)[:, 0]
    )
    t = truth["t"]
    for trial in (0, 7):
        inside = (t >= truth["starts"][trial] - 1e-9) & (t < truth["starts"][trial] + 0.5 - 1e-9)
        np.testing.assert_allclose(np.asarray(rec.behavior)[trial], [np.sin(t[inside]).mean(), (t[inside] / 30).mean()])
        np.testing.assert_allclose(np.asarray(rec.gaze)[trial], [np.cos(t[inside]).mean(), np.sin(t[inside]).mean()])
    np.testing.assert_array_equal(rec.tiers, np.array(["train", "train", "validation", "test"] * 3))
    np.testing.assert_array_equal(rec.trial_info["condition"], list("ab" * 6))
    # areas and positions of each unit's first electrode
    np.testing.assert_array_equal(rec.neuron_area, ["VISp", "VISp", "VISl"])
    np.testing.assert_array_equal(rec.neuron_coords, [[0, 0, 0], [1, 2, 0], [2, 4, 0]])
    # each frame of an image series is its own stimulus (an index series names repeats: below)
    np.testing.assert_array_equal(rec.stimulus_ids, np.arange(12))


def test_index_series_and_a_users_array_give_the_same_images(lab_file):
    path, truth = lab_file
    via_index = pt.load_nwb(path, window=(0.0, 0.5), stimuli="shown")
    library = truth["images"][:, None].astype(float)
    via_array = pt.load_nwb(path, window=(0.0, 0.5), stimuli=library, stimulus_index="image_index")
    np.testing.assert_array_equal(np.asarray(via_index.stimuli), np.asarray(via_array.stimuli))
    np.testing.assert_array_equal(via_index.stimulus_ids, np.arange(12) % 4)
    np.testing.assert_array_equal(via_index.stimulus_ids, via_array.stimulus_ids)
    with pytest.raises(pt.DataError, match="stimulus_index.*image_index"):
        pt.load_nwb(path, window=(0.0, 0.5), stimuli=library)
    with pytest.raises(pt.DataError, match="stimulus_index.*integer indices into the 2"):
        pt.load_nwb(path, window=(0.0, 0.5), stimuli=library[:2], stimulus_index="image_index")


def test_frames_of_unequal_trials_are_padded_and_events_align(lab_file):
    path, truth = lab_file
    rec = pt.load_nwb(path, bin_size=0.25, stimuli="natural_images")
    assert rec.stimulus_kind == "videos" and rec.n_frames == 4
    np.testing.assert_array_equal(rec.frame_counts, np.where(np.arange(12) % 3 == 2, 3, 4))
    y = np.asarray(rec.responses)
    assert np.isnan(y[2, 3]).all() and np.isfinite(y[0]).all()
    np.testing.assert_array_equal(y[0], direct_counts(truth["spikes"], truth["starts"][:1], 1.0, 0.25)[0])
    # absolute event times (NWB's convention): the window around the go cue
    cue = pt.load_nwb(path, window=("go_cue_time", -0.2, 0.3), bin_size=0.1, rows=np.arange(12) < 6)
    assert cue.n_trials == 6
    np.testing.assert_allclose(cue.trial_info["window_start"], truth["starts"][:6])
    np.testing.assert_array_equal(
        np.asarray(cue.responses), direct_counts(truth["spikes"], truth["starts"][:6], 0.5, 0.1)
    )
    relative = pt.load_nwb(path, window=("go_cue_time", -0.2, 0.3), bin_size=0.1, event_times="relative")
    np.testing.assert_allclose(relative.trial_info["window_start"], truth["starts"] + truth["starts"])


def test_errors_name_what_the_file_holds(lab_file):
    path, _ = lab_file
    with pytest.raises(pt.DataError, match=r"intervals.*'trials' \(12 rows"):
        pt.load_nwb(path, intervals="epochs", bin_size=0.1)
    with pytest.raises(pt.DataError, match=r"stimuli.*ImageSeries/IndexSeries.*'running' \(behaviour"):
        pt.load_nwb(path, stimuli="running")
    with pytest.raises(pt.DataError, match=r"behavior.*'nope'.*'pupil_radius'"):
        pt.load_nwb(path, bin_size=0.25, behavior=["nope"])
    with pytest.raises(pt.DataError, match="bin_size.*whole number of frames"):
        pt.load_nwb(path, window=(0.0, 0.5), bin_size=0.3)
    with pytest.raises(pt.DataError, match="window.*event column.*go_cue_time"):
        pt.load_nwb(path, window=("cue", 0.0, 0.5), bin_size=0.1)
    with pytest.raises(pt.DataError, match="rows"):
        pt.load_nwb(path, rows=np.zeros(12, bool), bin_size=0.1)
    with pytest.raises(pt.DataError, match="responses.*RoiResponseSeries"):
        pt.load_nwb(path, bin_size=0.1, responses="running")
    assert pt.data.nwb_contents(path)["series"]["eye"]["kind"] == "behaviour (EyeTracking)"
    # plausible mistakes are DataErrors too, never a traceback from numpy or pynwb
    for kwargs, field in [
        (dict(rows=[0, 40]), "rows"),
        (dict(rows=[0.5]), "rows"),
        (dict(window=("go_cue_time", 1.0)), "window"),
        (dict(window=1.0), "window"),
        (dict(window=("condition", 0.0, 0.5)), "window.*event times"),
        (dict(window=(0.0, 0.5), stimuli=np.zeros((4, 1, 6, 5)), stimulus_index="condition"), "stimulus_index"),
        (dict(gaze=["eye"]), "gaze"),
        (dict(behavior=[3]), "behavior"),
    ]:
        with pytest.raises(pt.DataError, match=field):
            pt.load_nwb(path, bin_size=0.1, **kwargs)


def test_event_times_that_are_neither_clearly_absolute_nor_relative(tmp_path):
    from pynwb import NWBFile

    nwb = NWBFile("mixed", "mixed-1", datetime(2024, 1, 1, tzinfo=timezone.utc))
    nwb.add_trial_column("cue", "cue time")
    for start, cue in [(100.0, 101.0), (200.0, 199.999), (300.0, 301.0)]:  # one cue before its trial
        nwb.add_trial(start_time=start, stop_time=start + 2.0, cue=cue)
    nwb.add_unit(spike_times=[100.5, 200.5])
    path = tmp_path / "mixed.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    with pytest.raises(pt.DataError, match="event_times.*'cue' holds times both before and after"):
        pt.load_nwb(path, window=("cue", 0.0, 0.5), bin_size=0.1)
    rec = pt.load_nwb(path, window=("cue", 0.0, 0.5), bin_size=0.1, event_times="absolute", name="mine")
    np.testing.assert_allclose(rec.trial_info["window_start"], [101.0, 199.999, 301.0])
    assert rec.name == "mine"


# ------------------------------------------------------------------------- files probtwin writes
def written(tmp_path, rng):
    rec = pt.Recording(
        rng.normal(size=(60, 1, 8, 8)),
        rng.poisson(2.0, size=(60, 5)).astype(float),
        behavior=rng.normal(size=(60, 3)),
        gaze=rng.normal(size=(60, 2)),
        neuron_area=["V1"] * 5,
        neuron_coords=rng.normal(size=(5, 2)),
        name="m1-session",
    )
    path = rec.to_nwb(
        tmp_path / "w.nwb",
        subject={"subject_id": "m1", "species": "Mus musculus", "sex": "F", "age": "P90D", "description": "a mouse"},
        session_start_time=datetime(2024, 5, 1, tzinfo=timezone.utc),
        experimenter=["Doe, Jane"],
        institution="A university",
        experiment_description="natural images",
        keywords=["V1"],
    )
    return rec, path


def test_written_files_pass_nwbinspector(tmp_path, rng):
    from nwbinspector import Importance, inspect_nwbfile

    rec, path = written(tmp_path, rng)
    serious = [
        m
        for m in inspect_nwbfile(nwbfile_path=str(path))
        if m.importance in (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)
    ]
    assert serious == [], [m.message for m in serious]
    np.testing.assert_array_equal(np.asarray(pt.load_nwb(path).responses), np.asarray(rec.responses))
    assert pt.load_nwb(path).name == "m1-session" and pt.load_nwb(path, name="renamed").name == "renamed"
    # without the subject the inspector finds what is missing: probtwin does not invent it
    bare = rec.to_nwb(tmp_path / "bare.nwb")
    names = {
        m.check_function_name for m in inspect_nwbfile(nwbfile_path=str(bare)) if m.importance == Importance.CRITICAL
    }
    assert names == {"check_subject_exists"}


def test_written_files_open_in_pynapple(tmp_path, rng):
    import pynapple as nap

    rec, path = written(tmp_path, rng)
    data = nap.load_file(str(path))
    np.testing.assert_array_equal(data["responses"].values, np.asarray(rec.responses))
    np.testing.assert_allclose(data["responses"].times(), np.arange(60.0))
    np.testing.assert_array_equal(data["gaze"].values, np.asarray(rec.gaze))
    assert len(data["trials"]) == 60


def test_images_in_external_files_name_the_way_out(tmp_path):
    from pynwb import NWBFile
    from pynwb.image import ImageSeries

    nwb = NWBFile("movies", "ext-1", datetime(2024, 1, 1, tzinfo=timezone.utc))
    nwb.add_trial(start_time=0.0, stop_time=1.0)
    nwb.add_unit(spike_times=[0.5])
    nwb.add_stimulus(
        ImageSeries(
            name="movie",
            external_file=["movie.avi"],
            starting_frame=[0],
            format="external",
            timestamps=[0.0],
            unit="n.a.",
        )
    )
    path = tmp_path / "ext.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    with pytest.raises(pt.DataError, match=r"stimuli.*stimulus_index=.*external files \['movie.avi'\]"):
        pt.load_nwb(path, stimuli="movie")
