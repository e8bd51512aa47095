import numpy as np
import pytest
import torch

import probtwin as pt

SMALL = dict(hidden_channels=8, layers=2, input_kernel=7, hidden_kernel=3)


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.free_viewing(n_neurons=30, n_scenes=40, n_frames=40, scene_size=(48, 48), mean_rate=1.5, seed=2)


@pytest.fixture(scope="module")
def fitted(sim):
    twin = pt.GazeTwin(sim.recording, **SMALL)
    history = twin.fit(max_epochs=30, lr=0.01, progress=False)
    return twin, history


def _sites(twin, **values):
    """The posterior means of every per-neuron site, some replaced."""
    post = {k: v.detach().clone() for k, (v, _) in twin.readouts[0].posterior().items() if not k.startswith("area_")}
    for k, v in values.items():
        post[k] = torch.as_tensor(v, dtype=torch.float32).expand_as(post[k]).clone()
    return post


def _location(twin, scenes, gaze, sites):
    batch = twin._batch(0, {"stimuli": scenes.astype(np.float32), "gaze": gaze.astype(np.float32)})
    with torch.no_grad():
        return twin._location(batch, **sites).numpy()


def test_an_eye_centred_field_sees_the_retinal_image_and_a_scene_centred_one_the_scene(sim):
    twin = pt.GazeTwin(sim.recording, **SMALL)
    twin.train(False)
    rng = np.random.default_rng(0)
    n = twin.specs[0].n_neurons
    with torch.no_grad():
        twin.readouts[0].weights_loc.normal_(0, 0.5)
    base = dict(
        gain_field=0.0, saccadic=0.0, remap=0.0, log_size=np.log(1.5), offset=torch.tensor(rng.uniform(-3, 3, (n, 2)))
    )
    scenes = np.asarray(sim.recording.stimuli[:2])
    gaze = np.full((2, 10, 2), 20.0)  # a steady fixation: no saccade
    moved_scene = np.roll(scenes, (3, 4), axis=(-2, -1))  # the scene 4 px right and 3 px down
    moved_gaze = gaze + np.array([4.0, 3.0])
    eye = _sites(twin, coupling=1.0, **base)
    a, b = _location(twin, scenes, gaze, eye), _location(twin, moved_scene, moved_gaze, eye)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # the same retinal image, the same response
    assert not np.allclose(a, _location(twin, scenes, moved_gaze, eye), rtol=1e-2)
    scene = _sites(twin, coupling=0.0, **base)
    np.testing.assert_allclose(
        _location(twin, scenes, gaze, scene), _location(twin, scenes, moved_gaze, scene), rtol=1e-5
    )


def test_remapping_acts_only_around_saccades(sim):
    twin = pt.GazeTwin(sim.recording, **SMALL)
    twin.train(False)
    with torch.no_grad():
        twin.readouts[0].weights_loc.normal_(0, 0.5)
    scenes = np.asarray(sim.recording.stimuli[:1])
    gaze = np.full((1, 30, 2), 18.0)
    gaze[:, 15:] = [26.0, 22.0]  # one saccade, onset at frame 15
    still = _location(twin, scenes, gaze, _sites(twin, remap=0.0))
    moving = _location(twin, scenes, gaze, _sites(twin, remap=1.0))
    changed = ~np.isclose(still, moving, rtol=1e-4).all(-1)[0]  # frames whose response changed
    assert changed[12:17].all() and not changed[:8].any() and not changed[22:].any()


def test_fit_predicts_held_out_frames_and_recovers_the_reference_frames(sim, fitted):
    twin, history = fitted
    rec = sim.recording
    test = rec.split("test")
    y, truth = np.asarray(test.responses), sim.truth["mean_response"][test.trial_index]
    true_r = np.nanmean(pt.metrics.single_trial_correlation(y, truth))
    scores = twin.evaluate(rec, "test")
    assert scores["single_trial_correlation"] > 0.45 * true_r
    frames = twin.reference_frames()
    p = frames["p_scene_centred"].to_numpy()
    assert pt.metrics.roc_auc(sim.truth["scene_centred"], p) > 0.7
    assert set(frames.columns) >= {"area", "coupling", "scene_centred", "eye_centred"}


def test_parameter_draws_and_area_laws(fitted):
    twin, _ = fitted
    d = twin.parameter_draws(30)
    n = twin.specs[0].n_neurons
    assert d["offset"].shape == (30, n, 2) and d["area_beta"].shape == (30, 3)
    np.testing.assert_allclose(d["size"], np.exp(d["log_size"]))
    laws = twin.size_eccentricity(num_samples=200)
    assert list(laws.index) == ["IT", "V1", "V4"] == twin.areas() and laws["neurons"].sum() == n
    assert (laws["slope_lower"] <= laws["slope"]).all() and (laws["slope"] <= laws["slope_upper"]).all()
    table = twin.remapping()
    assert "remap_lag" in table.attrs and len(table) == n


def test_predictions_for_new_viewings_and_the_saved_twin(sim, fitted, tmp_path):
    twin, _ = fitted
    scenes, gaze = np.asarray(sim.recording.stimuli[:3]), np.asarray(sim.recording.gaze[:3])
    pred = twin.predict(scenes, gaze=gaze, num_samples=5)
    assert pred.mean.shape == (3, 40, twin.specs[0].n_neurons)
    one = twin.predict(scenes, gaze=gaze[0], num_samples=5)  # one trace for every scene
    np.testing.assert_allclose(one.mean[0], pred.mean[0], rtol=1e-5)
    loaded = pt.load(twin.save(tmp_path / "gaze.pt"))
    np.testing.assert_allclose(loaded.predict(scenes, gaze=gaze, num_samples=5).mean, pred.mean, rtol=1e-5)


def test_given_responses_are_per_frame_of_the_gaze_trace(sim, fitted):
    twin, _ = fitted
    scenes, gaze = np.asarray(sim.recording.stimuli[:3]), np.asarray(sim.recording.gaze[:3])
    y = np.asarray(sim.recording.responses[:3])  # (3, 40 frames, neurons)
    index = np.arange(10)
    plain = twin.predict(scenes, gaze=gaze, num_samples=5)
    given = twin.predict(scenes, gaze=gaze, num_samples=5, given=(index, y[..., index]))
    assert given.mean.shape == (3, 40, twin.specs[0].n_neurons - 10)
    np.testing.assert_allclose(given.mean, plain.mean[..., 10:], rtol=1e-5)  # independent noise: as without
    with pytest.raises(pt.DataError, match=r"given\[1\]"):
        twin.predict(scenes, gaze=gaze, num_samples=5, given=(index, y[:, 0, index]))  # one value per trial
    flow = pt.GazeTwin(sim.recording, noise="flow", latent_rank=2, **SMALL)
    flow.fit(max_epochs=2, lr=0.01, progress=False)
    conditioned = flow.predict(scenes, gaze=gaze, num_samples=5, given=(index, y[..., index])).mean
    alone = flow.predict(scenes, gaze=gaze, num_samples=5).mean[..., 10:]
    assert np.isfinite(conditioned).all() and np.abs(conditioned - alone).max() > 1e-3  # each frame's state inferred


def test_independent_priors_have_no_area_sites(sim):
    twin = pt.GazeTwin(sim.recording, area_prior=False, **SMALL)
    twin.fit(max_epochs=1, progress=False)
    assert "area_beta" not in twin.parameter_draws(4)
    with pytest.raises(pt.DataError, match="area_prior"):
        twin.size_eccentricity()


def _rec(sim, **changes):
    rec = sim.recording
    fields = dict(stimuli=np.asarray(rec.stimuli), responses=np.asarray(rec.responses), gaze=np.asarray(rec.gaze))
    fields["neuron_area"] = rec.neuron_area
    fields.update(changes)
    return pt.Recording(**fields)


def test_bad_input_is_a_data_error(sim):
    gaze = np.asarray(sim.recording.gaze).copy()
    gaze[3, 7] = [60.0, 10.0]  # off a 48-pixel scene
    with pytest.raises(pt.DataError, match=r"gaze[\s\S]*inside the scene[\s\S]*trial 3 frame 7"):
        pt.GazeTwin(_rec(sim, gaze=gaze), **SMALL)
    with pytest.raises(pt.DataError, match="gaze"):  # a trace of another length than the responses'
        _rec(sim, gaze=np.asarray(sim.recording.gaze)[:, :30])
    twin = pt.GazeTwin(sim.recording, **SMALL)
    with pytest.raises(pt.DataError, match="gaze"):
        twin.predict(np.asarray(sim.recording.stimuli[:2]), num_samples=2)  # no gaze at all
    areas = np.asarray(sim.recording.neuron_area).astype(object)
    areas[[2, 5]] = ""
    with pytest.raises(pt.DataError, match=r"neuron_area[\s\S]*2 of 30"):
        pt.GazeTwin(_rec(sim, neuron_area=areas), **SMALL)
    video = pt.simulate.video(n_neurons=4, n_trials=6, n_frames=12, seed=0).recording
    with pytest.raises(pt.DataError, match=r"gaze[\s\S]*saccade_onset"):  # scenes per frame, no gaze, no onset
        pt.GazeTwin(pt.Recording(video.stimuli, video.responses))
    with pytest.raises(pt.DataError, match="shifter"):
        pt.GazeTwin(sim.recording, shifter=True)
    with pytest.raises(pt.DataError, match=r"pooling_blend[\s\S]*'variance' or 'log'"):
        pt.GazeTwin(sim.recording, pooling_blend="linear")


def test_one_response_per_trial_is_a_fixation_at_the_centre():
    sim = pt.simulate.v1(n_neurons=12, n_images=120, image_size=(20, 20), seed=1)
    r = sim.recording
    rec = pt.Recording(np.asarray(r.stimuli), np.asarray(r.responses), tiers=r.tiers, name="fixation")
    twin = pt.GazeTwin(rec, **SMALL)
    twin.fit(max_epochs=2, progress=False)
    images = np.asarray(rec.stimuli[:5])
    pred = twin.predict(images, num_samples=3)
    assert pred.mean.shape == (5, 12)  # per trial, as the recording
    centre = twin.predict(images, gaze=np.array([9.5, 9.5]), num_samples=3)  # the same fixation, given
    np.testing.assert_allclose(centre.mean, pred.mean, rtol=1e-5)
    assert set(twin.evaluate(rec, "test")) >= {"single_trial_correlation", "log_likelihood_bits"}
    with pytest.raises(pt.DataError, match="inside the scene"):  # gaze in other units than pixels
        pt.GazeTwin(pt.Recording(np.asarray(r.stimuli), np.asarray(r.responses), gaze=np.asarray(r.gaze) - 30))


def test_arviz_export_holds_every_site_and_each_frame(sim, fitted):
    twin, _ = fitted
    idata = twin.to_arviz(sim.recording, "test", num_samples=4)
    assert {"offset", "log_size", "coupling", "remap", "area_beta"} <= set(idata.posterior.data_vars)
    n_test = sim.recording.split("test").n_trials
    assert idata.observed_data["responses"].shape == (n_test, 40, twin.specs[0].n_neurons)


def test_recalibration_is_refused_for_the_gaze_readout(fitted, sim):
    twin, _ = fitted
    with pytest.raises(pt.DataError, match="image readout"):
        twin.recalibrate(sim.recording)
