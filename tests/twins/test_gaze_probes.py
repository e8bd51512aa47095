"""The gaze twin on probes flashed around one saccade (scenes per frame, no gaze trace): the
saccade's vector and each field's place and shift are recovered from a simulation with known
truth."""

import numpy as np
import pytest
import torch

import probtwin as pt

ONSET = 30


def _probes(
    trials: int = 240, frames: int = 60, seed: int = 0, base: float = 0.05, gain: float = 1.5, saccade=(3.0, -2.0)
):
    """Units with Gaussian fields on a 9 x 9 grid that move with the eye by the saccade (3, -2)
    pixels at frame ONSET, responding to a probe two frames later: ``base + gain * drive``
    spikes per frame, the drive 1 for a probe at the field's centre."""
    rng = np.random.default_rng(seed)
    maps = np.zeros((trials, 1, frames, 9, 9), np.float32)
    where = rng.integers(0, 81, size=(trials, frames))
    shown = rng.random((trials, frames)) < 0.8
    t, f = np.nonzero(shown)
    maps[t, 0, f, where[t, f] // 9, where[t, f] % 9] = 1.0
    centre = np.array([4.0, 4.0])
    offsets = np.array([[-2.0, 1.0], [1.0, 2.0], [-1.0, -1.0]])  # (x, y) pixels from the centre
    saccade = np.array(saccade, dtype=float)
    yy, xx = np.mgrid[0:9, 0:9]
    rate = np.full((trials, frames, 3), base)
    for i, o in enumerate(offsets):
        for after in (False, True):
            x, y = centre + o + (saccade if after else 0.0)
            field = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 0.8**2))
            drive = np.einsum("tfhw,hw->tf", maps[:, 0], field)
            drive = np.pad(drive, ((0, 0), (2, 0)))[:, :frames]  # seen two frames later
            when = (np.arange(frames) >= ONSET + 2) == after
            rate[:, when, i] += gain * drive[:, when]
    rec = pt.Recording(
        maps, rng.poisson(rate).astype(np.float32), trial_info={"saccade_onset": np.full(trials, float(ONSET))}
    )
    return rec, offsets, saccade


@pytest.fixture(scope="module")
def fitted():
    rec, offsets, saccade = _probes()
    twin = pt.GazeTwin(rec, hidden_channels=4, layers=1, input_kernel=3, temporal_lags=5, temporal_basis=3)
    twin.fit(max_epochs=40, progress=False)
    return twin, rec, offsets, saccade


def test_probes_around_a_saccade_give_the_fields_and_the_saccade(fitted):
    twin, _, offsets, saccade = fitted
    d = twin.parameter_draws(200)
    shift = (d["coupling"][..., None] * d["saccade"][:, None]).mean(0)  # each field's move at the saccade
    np.testing.assert_allclose(d["offset"].mean(0), offsets, atol=0.6)
    np.testing.assert_allclose(shift, np.tile(saccade, (3, 1)), atol=0.8)
    # two pairs, over the probe map itself and the core's 4 channels
    assert d["weights"].shape == (200, 3, 2, 5) and d["temporal"].shape == (200, 3, 2, 3)
    # the latency of two frames: a probe on each field, 10 frames before the saccade, is answered 2 frames on
    probes = np.zeros((4, 1, 60, 9, 9), np.float32)
    for i, (x, y) in enumerate(np.array([4.0, 4.0]) + offsets):
        probes[1 + i, 0, ONSET - 10, int(y), int(x)] = 1.0
    mean = twin.predict(probes, num_samples=20, session=0).mean
    evoked = np.stack([mean[1 + i, :, i] - mean[0, :, i] for i in range(3)])  # (neurons, frames)
    assert np.all(evoked.argmax(-1) == ONSET - 8)


def test_a_probe_recording_predicts_and_checks_its_onset(fitted):
    twin, rec, _, _ = fitted
    test = rec.split("test")
    mean = twin.predict(test, num_samples=20).mean
    assert mean.shape == (test.n_trials, 60, 3) and np.all(np.asarray(mean) > 0)
    onset = np.full(rec.n_trials, float(ONSET))
    onset[3] = 10.0
    bad = pt.Recording(rec.stimuli, rec.responses, trial_info={"saccade_onset": onset})
    with pytest.raises(pt.DataError, match=r"saccade_onset[\s\S]*the same finite frame"):
        pt.GazeTwin(bad)
    still = pt.Recording(np.asarray(rec.stimuli)[:, :, 0], rec.responses, trial_info={"saccade_onset": onset * 0})
    with pytest.raises(pt.DataError, match="scenes per frame"):
        pt.GazeTwin(still)


def test_the_perisaccadic_units_fit_with_the_defaults(shared_data):
    rec = pt.datasets.nategh_perisaccadic("181024", root=shared_data)
    rec = rec.subset(np.arange(160))  # a fifth of the trials: the test's budget
    twin = pt.GazeTwin(rec)
    c = twin.config
    assert c["saccade_onset"] == [100.0]
    assert (c["saccade_basis"], c["basis_spacing"], c["basis_start"]) == (10, 4.0, -12.0)
    history = twin.fit(max_epochs=2, progress=False)
    assert len(history) == 2 and np.isfinite(history["elbo"]).all()
    d = twin.parameter_draws(50)
    assert d["saccade"].shape == (50, 2) and d["temporal"].shape == (50, 2, 2, 5)  # 2 neurons, 2 pairs
    mean = twin.predict(rec.split("test"), num_samples=10).mean
    assert mean.shape == (rec.split("test").n_trials, 200, 2) and np.all(mean > 0)


def test_the_probed_field_sits_at_the_offset_before_the_saccade_and_moves_with_it(fitted):
    twin, _, offsets, saccade = fitted
    rf = twin.probe_sensitivity([ONSET - 10, ONSET + 10], num_samples=20)
    assert rf["mean"].shape == (2, 9, 9, 3) and np.all(rf["lower"] <= rf["upper"])
    for when, shift in ((0, 0.0), (1, saccade)):
        for i, o in enumerate(offsets):
            row, col = np.unravel_index(rf["mean"][when, :, :, i].argmax(), (9, 9))
            x, y = np.array([4.0, 4.0]) + o + shift
            assert abs(col - x) <= 1 and abs(row - y) <= 1
    with pytest.raises(pt.DataError, match="times"):
        twin.probe_sensitivity([60])


def test_probe_maps_reach_the_readout_beside_the_core_by_default():
    """On probe maps the readout reads the map itself as a channel before the core's features
    (``stimulus_pathway``); on scenes with a gaze trace, and with a custom core, the core's
    features alone."""
    rec, _, _ = _probes(trials=60)
    settings = dict(hidden_channels=2, layers=1, input_kernel=3, temporal_lags=5, temporal_basis=3)
    twin = pt.GazeTwin(rec, **settings)
    assert twin.config["stimulus_pathway"] is True and twin.core.out_channels == 3
    assert twin.readouts[0].weights_loc.shape == (3, 2, 3)  # (neurons, pairs, channels)
    frames = torch.as_tensor(rec.stimuli[:2]).transpose(1, 2).flatten(0, 1)  # (trials * frames, 1, 9, 9)
    torch.testing.assert_close(twin.core.eval()(frames)[:, :1], frames)
    assert pt.GazeTwin(rec, stimulus_pathway=False, **settings).core.out_channels == 2
    sim = pt.simulate.free_viewing(n_neurons=6, n_scenes=8, n_frames=20, scene_size=(32, 32), seed=0)
    assert pt.GazeTwin(sim.recording, **settings).config["stimulus_pathway"] is False
    custom = pt.nn.ConvCore(1, hidden_channels=2, layers=1, input_kernel=3)
    assert pt.GazeTwin(rec, core=custom, **settings).config["stimulus_pathway"] is False
    with pytest.raises(pt.DataError, match="stimulus_pathway"):
        pt.GazeTwin(rec, core=custom, stimulus_pathway=True, **settings)


def test_fields_of_one_grid_place_start_small_unless_a_size_is_given():
    rec, offsets, _ = _probes(trials=120)
    settings = dict(hidden_channels=2, layers=1, input_kernel=3, temporal_lags=5, temporal_basis=3)
    start = pt.GazeTwin(rec, **settings).readouts[0]
    assert np.allclose(start.log_size_loc.detach().exp().numpy(), 1.0)  # the energy scale of 0.8-wide fields
    assert np.allclose(start.area_alpha_loc.detach().exp().numpy(), 1.0)
    np.testing.assert_allclose(start.offset_loc.detach().numpy() * start.pixels, offsets, atol=1.0)
    given = pt.GazeTwin(rec, init_size=3.0, **settings).readouts[0]
    assert np.allclose(given.log_size_loc.detach().exp().numpy(), 3.0)
    with pytest.raises(pt.DataError, match="init_size"):
        pt.GazeTwin(rec, init_size=0.0, **settings)


def test_the_saccade_vector_starts_at_the_shift_of_the_fields():
    rec, offsets, saccade = _probes(trials=120)
    settings = dict(hidden_channels=2, layers=1, input_kernel=3, temporal_lags=5, temporal_basis=3)
    start = pt.GazeTwin(rec, **settings).readouts[0]
    vector = start.saccade_loc.detach().numpy() * start.pixels
    np.testing.assert_allclose(0.75 * vector, saccade, atol=0.5)  # a field moves by coupling (0.75) x vector
    np.testing.assert_allclose(start.offset_loc.detach().numpy() * start.pixels, offsets, atol=1.0)  # before
    rng = np.random.default_rng(1)
    spikes = rng.poisson(0.3, size=rec.responses.shape).astype(np.float32)
    noise = pt.Recording(np.asarray(rec.stimuli), spikes, trial_info=rec.trial_info)
    flat = pt.GazeTwin(noise, **settings).readouts[0]
    assert torch.all(flat.saccade_loc == 0)  # no field stands out: nothing to start the vector from


def test_wide_fields_on_a_larger_map_start_wide():
    torch.manual_seed(0)
    maps = torch.randn(80, 1, 20, 24, 24)
    energy = pt.nn.contrast_energy(maps.transpose(1, 2).flatten(0, 1), 4.0).unflatten(0, (80, 20))
    spikes = torch.poisson(0.5 * energy[:, :, [8, 15], [6, 17]] / energy.mean())  # fields of scale 4
    rec = pt.Recording(maps.numpy(), spikes.numpy(), trial_info={"saccade_onset": np.full(80, 10.0)})
    twin = pt.GazeTwin(rec, hidden_channels=2, layers=1, input_kernel=3, temporal_lags=2, temporal_basis=1)
    assert np.allclose(twin.readouts[0].log_size_loc.detach().exp().numpy(), 4.0)
    assert torch.all(twin.readouts[0].saccade_loc == 0)  # fixations too short for the lags: no start from them


def test_weak_transient_fields_are_found_with_the_default_kernel_scale():
    """Fields that raise a unit's rate from 0.1 to 0.4 spikes for one frame (the default 20 lags
    in 5 bumps): with bumps of peak 1 the twin finds each at its place; with the bumps scaled to
    sum to 1 (``temporal_norm="sum"``, twins saved before) the same fit left all three at 0."""
    rec, offsets, _ = _probes(base=0.1, gain=0.3, saccade=(0.0, 0.0))
    twin = pt.GazeTwin(rec, hidden_channels=4, layers=1, input_kernel=3)
    assert twin.config["temporal_norm"] == "peak"
    twin.fit(max_epochs=40, progress=False)
    rf = twin.probe_sensitivity([ONSET - 10], num_samples=20)["mean"][0]  # (9, 9, neurons), truth 0.3 at the centre
    for i, (x, y) in enumerate(np.array([4.0, 4.0]) + offsets):
        row, col = np.unravel_index(rf[..., i].argmax(), (9, 9))
        assert abs(col - x) <= 1 and abs(row - y) <= 1
        assert rf[int(y), int(x), i] > 0.05
    with pytest.raises(pt.DataError, match="temporal_norm"):
        pt.GazeTwin(rec, temporal_norm="area")


@pytest.mark.parametrize("rank", [2, None])
def test_two_pairs_give_bright_and_dark_probes_time_courses_of_their_own(rank):
    """A field that answers bright probes two frames later and dark ones five frames later is not
    separable in space and time: the twin's two pairs of weights and kernels recover both latencies,
    as do free weights per channel and temporal bump (``temporal_rank=None``)."""
    rng = np.random.default_rng(2)
    trials, frames = 240, 40
    maps = np.zeros((trials, 1, frames, 9, 9), np.float32)
    t, f = np.nonzero(rng.random((trials, frames)) < 0.8)
    where = rng.integers(0, 81, size=len(t))
    maps[t, 0, f, where // 9, where % 9] = rng.choice([-1.0, 1.0], size=len(t))
    yy, xx = np.mgrid[0:9, 0:9]
    field = np.exp(-((xx - 5.0) ** 2 + (yy - 3.0) ** 2) / (2 * 0.8**2))
    drive = np.einsum("tfhw,hw->tf", maps[:, 0], field)
    bright = np.pad(np.clip(drive, 0, None), ((0, 0), (2, 0)))[:, :frames]
    dark = np.pad(np.clip(-drive, 0, None), ((0, 0), (5, 0)))[:, :frames]
    rate = 0.05 + 1.5 * bright + 1.5 * dark
    rec = pt.Recording(
        maps, rng.poisson(rate[..., None]).astype(np.float32), trial_info={"saccade_onset": np.full(trials, 20.0)}
    )
    twin = pt.GazeTwin(
        rec, hidden_channels=4, layers=1, input_kernel=3, temporal_lags=8, temporal_basis=4, temporal_rank=rank
    )
    twin.fit(max_epochs=40, progress=False)
    d = twin.parameter_draws(10)
    if rank is None:
        assert d["weights"].shape == (10, 1, 4, 5) and "temporal" not in d  # (draws, neurons, bumps, channels)
        assert twin.site_dims["weights"] == ("neuron", "temporal_basis", "channel")
    probes = np.zeros((3, 1, frames, 9, 9), np.float32)
    probes[1, 0, 5, 3, 5], probes[2, 0, 5, 3, 5] = 1.0, -1.0
    mean = twin.predict(probes, num_samples=20, session=0).mean[..., 0]
    evoked = mean[1:] - mean[:1]  # (bright, dark) x frames
    assert evoked[:, 5:15].argmax(-1).tolist() == [2, 5]
    assert evoked[0, 7] > 0.5 and evoked[1, 10] > 0.5  # spikes per frame at the peaks (truth: 1.5)


def test_a_twin_saved_with_one_pair_before_the_pairs_existed_loads_as_one(fitted, tmp_path):
    twin, rec, _, _ = fitted
    settings = dict(hidden_channels=4, layers=1, input_kernel=3, temporal_lags=5, temporal_basis=3)
    one = pt.GazeTwin(rec, temporal_rank=1, stimulus_pathway=False, **settings)
    one.load_state_dict(
        {
            k: v[:, :1, 1:] if k.startswith("readouts.0.weights_") else v[:, :1] if ".temporal_" in k else v
            for k, v in twin.state_dict().items()
        }
    )
    payload = torch.load(one.save(tmp_path / "one.pt"), weights_only=True)
    for key in ("temporal_rank", "temporal_norm", "stimulus_pathway", "pooling_blend"):
        del payload["config"][key]
    for key in [k for k in payload["state"] if ".weights_" in k or ".temporal_" in k]:
        payload["state"][key] = payload["state"][key][:, 0]  # saved without the pair's axis
    # then the bumps summed to 1 over the lags: the same kernels had kappa (and its sd) larger by their sum
    total = float(pt.nn.gaze.lag_basis(5, 3).sum())
    state = payload["state"]
    state["readouts.0.temporal_loc"] = state["readouts.0.temporal_loc"] * total
    sd = torch.nn.functional.softplus(state["readouts.0.temporal_scale_unconstrained"]) * total
    state["readouts.0.temporal_scale_unconstrained"] = sd + torch.log(-torch.expm1(-sd))
    torch.save(payload, tmp_path / "older.pt")
    older = pt.load(tmp_path / "older.pt")
    assert older.config["temporal_rank"] == 1 and older.readouts[0].weights_loc.shape == (3, 1, 4)
    assert older.config["temporal_norm"] == "sum" and one.config["temporal_norm"] == "peak"
    assert older.config["stimulus_pathway"] is False and older.core.out_channels == 4  # the core's features alone
    assert older.config["pooling_blend"] == "log" and one.config["pooling_blend"] == "variance"
    test = rec.split("test")
    np.testing.assert_allclose(
        older.predict(test, num_samples=5).mean, one.predict(test, num_samples=5).mean, rtol=1e-5
    )


def test_a_time_course_every_trial_shares_does_not_place_a_field():
    """Probes at the centre come more often in frames 20-35 of every trial, when the unit fires
    more whatever it sees; its field is elsewhere, at (2, 6), answering three frames later. The
    start removes each frame's mean over the trials first and finds the field, not the centre."""
    rng = np.random.default_rng(3)
    trials, frames = 300, 80
    maps = np.zeros((trials, 1, frames, 9, 9), np.float32)
    where = rng.integers(0, 81, size=(trials, frames))
    where[:, 20:36] = np.where(rng.random((trials, 16)) < 0.5, 40, where[:, 20:36])  # the centre, locked to the trial
    t, f = np.nonzero(rng.random((trials, frames)) < 0.8)
    maps[t, 0, f, where[t, f] // 9, where[t, f] % 9] = 1.0
    drive = np.pad(maps[:, 0, :, 6, 2], ((0, 0), (3, 0)))[:, :frames]
    rate = 0.1 + 0.4 * ((np.arange(frames) >= 20) & (np.arange(frames) < 40)) + 0.6 * drive
    rec = pt.Recording(
        maps, rng.poisson(rate[..., None]).astype(np.float32), trial_info={"saccade_onset": np.full(trials, 50.0)}
    )
    start = pt.GazeTwin(rec, hidden_channels=2, layers=1, input_kernel=3).readouts[0]
    np.testing.assert_allclose(start.offset_loc.detach().numpy()[0] * start.pixels, [-2.0, 2.0])  # from (4, 4)
