import numpy as np
import pytest

import probtwin as pt
from probtwin.simulate.free_viewing import AREA_LAWS, gaze_trace


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.free_viewing(n_neurons=45, n_scenes=12, n_frames=80, seed=3)


def test_shapes_and_keys(sim):
    rec, t = sim.recording, sim.truth
    assert rec.responses.shape == (12, 80, 45) and rec.gaze.shape == (12, 80, 2)
    assert rec.stimuli.shape == (12, 1, 64, 64)
    assert t["mean_response"].shape == (12, 80, 45) and t["log_likelihood"].shape == (12,)
    assert t["read_position"].shape == (12, 80, 45, 2)
    assert sorted(set(rec.neuron_area)) == ["IT", "V1", "V4"]
    np.testing.assert_array_equal(t["area"], rec.neuron_area)


def test_the_log_likelihood_is_the_poisson_density_of_the_responses(sim):
    from scipy.stats import poisson

    y, m = np.asarray(sim.recording.responses), sim.truth["mean_response"]
    np.testing.assert_allclose(sim.truth["log_likelihood"], poisson.logpmf(y, m).sum((1, 2)), rtol=1e-6)


def test_fixations_last_200_to_400_ms_and_there_are_at_least_five():
    rng = np.random.default_rng(0)
    g = gaze_trace(50, 80, (64, 64), rng, margin=16, fixation_frames=(8, 16))
    jumps = np.linalg.norm(np.diff(g, axis=1), axis=-1) > 2
    for trial in jumps:
        onsets = np.flatnonzero(trial) + 1
        durations = np.diff(np.concatenate([[0], onsets]))
        assert len(onsets) + 1 >= 5
        assert durations.min() >= 8 and durations.max() <= 16
    assert g.min() > 16 - 1 and g.max() < 64 - 16  # inside the margin (jitter 0.2 px)


def test_sizes_follow_each_area_law(sim):
    big = pt.simulate.free_viewing(n_neurons=600, n_scenes=2, n_frames=20, seed=4)
    t = big.truth
    for name in ("V1", "V4", "IT"):
        s = t["area"] == name
        slope, intercept = np.polyfit(t["eccentricity"][s], np.log(t["size"][s]), 1)
        assert abs(slope - AREA_LAWS[name]["beta"]) < 0.03
        assert abs(intercept - AREA_LAWS[name]["alpha"]) < 0.15


def test_eye_centred_neurons_move_with_the_eye_and_scene_centred_ones_do_not(sim):
    t = sim.truth
    pos, gaze = t["read_position"], t["gaze"]
    steady = np.isinf(t["lag"]) | (np.abs(t["lag"] + 1) > 6)  # far from any remapping
    eye = ~t["scene_centred"]
    rel = pos[..., eye, :] - gaze[..., None, :]
    np.testing.assert_allclose(rel[steady], np.broadcast_to(t["offset"][eye], rel.shape)[steady], atol=1e-6)
    scene = pos[..., t["scene_centred"], :]
    np.testing.assert_allclose(scene, np.broadcast_to(scene[:1, :1], scene.shape))


def test_respond_reproduces_the_mean_and_depends_on_gaze(sim):
    rec = sim.recording
    np.testing.assert_allclose(
        sim.respond(rec.stimuli[:3], gaze=rec.gaze[:3]), sim.truth["mean_response"][:3], rtol=1e-5
    )
    moved = np.asarray(rec.gaze[:3]) + np.array([3.0, 0.0])
    assert not np.allclose(sim.respond(rec.stimuli[:3], gaze=moved), sim.truth["mean_response"][:3])
    with pytest.raises(pt.DataError, match="gaze"):
        sim.respond(rec.stimuli[:3])


def test_peri_saccadic_suppression_lowers_the_mean_after_onsets(sim):
    t = sim.truth
    m = t["mean_response"] / t["mean_response"].mean((0, 1))
    just_after = t["since_onset"] == 1
    later = t["since_onset"] >= 6
    assert m[just_after].mean() < 0.8 * m[later].mean()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"areas": ("V2",)}, "areas"),
        ({"n_frames": 10}, "n_frames"),
        ({"scene_centred_fraction": 2.0}, "scene_centred_fraction"),
    ],
)
def test_bad_settings_are_data_errors(kwargs, field):
    with pytest.raises(pt.DataError, match=field):
        pt.simulate.free_viewing(n_neurons=6, n_scenes=2, **kwargs)
