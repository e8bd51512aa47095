import numpy as np
import pyro
import pytest
import torch

import probtwin as pt
from probtwin.data.batching import default_burn_in
from probtwin.nn.video_core import ConvGRU, FactorizedCore3d

ONE_LAG = dict(readout_lags=1, readout_basis=1)  # the readout reads each frame's features alone
SMALL = dict(hidden_channels=8, layers=2, input_kernel=7, hidden_kernel=3, input_frames=5, hidden_frames=3)


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.video(n_neurons=24, n_trials=60, n_frames=24, image_size=(16, 20), mean_rate=3.0, seed=2)


@pytest.fixture(scope="module")
def fitted(sim):
    twin = pt.VideoTwin(sim.recording, clip_frames=16, **SMALL)
    history = twin.fit(max_epochs=30, lr=0.01, progress=False)
    return twin, history


@pytest.mark.parametrize("recurrent", [False, True])
def test_the_core_is_causal(recurrent):
    torch.manual_seed(0)
    core = FactorizedCore3d(1, hidden_channels=4, layers=2, input_frames=4, hidden_frames=2, recurrent=recurrent)
    core.eval()
    x = torch.randn(2, 1, 10, 8, 9)
    changed = x.clone()
    changed[:, :, 6:] = torch.randn_like(changed[:, :, 6:])  # a different future
    a, b = core(x), core(changed)
    assert a.shape == (2, 4, 10, 8, 9)
    torch.testing.assert_close(a[:, :, :6], b[:, :, :6])
    assert not torch.allclose(a[:, :, 6:], b[:, :, 6:])
    assert core.history == 3 + 1


def test_the_gru_carries_the_past():
    torch.manual_seed(0)
    gru = ConvGRU(3)
    x = torch.zeros(1, 3, 6, 5, 5)
    pulse = x.clone()
    pulse[:, :, 0] = 1.0  # input only in the first frame
    assert not torch.allclose(gru(pulse)[:, :, -1], gru(x)[:, :, -1])


@pytest.mark.parametrize("draws", [False, True])
def test_the_readouts_lags_weight_each_neurons_past_reads_by_its_bumps(draws):
    from probtwin.nn import read_features, readout_response
    from probtwin.nn.gaze import lag_basis

    torch.manual_seed(0)
    trials, frames, c, n, k = 2, 7, 3, 4, 2
    features = torch.randn(trials * frames, c, 5, 6)
    positions = torch.rand(n, 2) * 2 - 1
    weights, bias = torch.randn(n, k * c), torch.randn(n)
    state, state_weights = torch.randn(trials * frames, 2), torch.randn(n, 2, k * c)
    lags = lag_basis(4, k)
    reads = read_features(features, positions).unflatten(0, (trials, frames))  # (T, F, C, N)
    w = weights.reshape(n, k, c) + torch.einsum("tj,njc->tnc", state, state_weights).reshape(trials, frames, n, k, c)
    expected = bias.expand(trials, frames, n).clone()
    for f in range(frames):
        for lag in range(min(4, f + 1)):
            for b in range(k):
                expected[:, f] += lags[b, lag] * torch.einsum("tcn,tnc->tn", reads[:, f - lag], w[:, f - lag, :, b])
    if draws:  # two draws, the second the first's double
        args = (positions.expand(2, n, 2), torch.stack([weights, 2 * weights]), torch.stack([bias, 2 * bias]))
        out = readout_response(
            features,
            *args,
            state=state,
            state_weights=torch.stack([state_weights, 2 * state_weights]),
            lags=lags,
            frames=frames,
        )
        torch.testing.assert_close(out[1], 2 * out[0])
        out = out[0]
    else:
        out = readout_response(
            features, positions, weights, bias, state=state, state_weights=state_weights, lags=lags, frames=frames
        )
    torch.testing.assert_close(out, expected.flatten(0, 1), rtol=1e-4, atol=1e-4)


def test_the_readouts_lags_give_each_neuron_its_own_latency():
    """Neurons follow the screen's brightness through the simulator's temporal kernels of
    latencies 1.5, 2.5 and 4 frames; a core without temporal filters cannot delay, so only the
    readout's lags can fit them."""
    from probtwin.simulate.video import temporal_kernel

    rng = np.random.default_rng(0)
    n, frames, lags = 80, 30, 9
    light = rng.normal(size=(n, frames)).astype(np.float32)
    stimuli = np.broadcast_to(light[:, None, :, None, None], (n, 1, frames, 6, 6)).copy()
    kernels = temporal_kernel(np.array([1.5, 2.5, 4.0]), lags)  # (3, lags)
    padded = np.pad(light, ((0, 0), (lags - 1, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, lags, axis=1)[..., ::-1]  # (n, frames, lags)
    drive = windows @ kernels.T
    rate = np.exp(0.3 + 0.6 * drive / drive.std((0, 1)))
    responses = rng.poisson(rate).astype(np.float32)
    rec = pt.Recording(stimuli, responses, tiers=np.array(["train"] * 60 + ["validation"] * 10 + ["test"] * 10))
    core = dict(hidden_channels=4, layers=1, input_kernel=3, input_frames=1, hidden_frames=1)
    test = rec.split("test")
    scores = {}
    for readout_lags, basis in ((1, 1), (lags, 5)):
        twin = pt.VideoTwin(
            rec, clip_frames=frames, burn_in=lags, readout_lags=readout_lags, readout_basis=basis, **core
        )
        twin.fit(max_epochs=60, lr=0.02, patience=60, progress=False)
        mean = twin.predict(test, num_samples=20).mean[:, lags:]
        truth = rate[test.trial_index][:, lags:]
        scores[readout_lags] = [np.corrcoef(mean[..., i].ravel(), truth[..., i].ravel())[0, 1] for i in range(3)]
    assert min(scores[lags]) > 0.9, scores
    assert max(scores[1][1:]) < 0.5, scores  # the frame alone holds little of the past


def test_clips_hold_matching_windows_of_every_field():
    """Stimuli, behaviour, gaze and responses of a clip come from the same frames of one trial,
    the responses after the burn-in only, the likelihood scaled to the whole trial."""
    n, frames, neurons = 12, 20, 3
    stamp = np.arange(frames, dtype=np.float32)
    trial = np.arange(n, dtype=np.float32)[:, None]
    stimuli = np.broadcast_to((trial * 100 + stamp)[:, None, :, None, None], (n, 1, frames, 6, 7)).copy()
    responses = np.broadcast_to((trial * 100 + stamp)[..., None], (n, frames, neurons)).copy()
    behavior = np.stack([trial * 100 + stamp] * 2, -1)
    gaze = np.stack([trial * 100 + stamp] * 2, -1)
    rec = pt.Recording(stimuli, responses, behavior=behavior, gaze=gaze, tiers=np.array(["train"] * n))
    twin = pt.VideoTwin(rec, likelihood="normal", clip_frames=8, burn_in=3, position_init="uniform", **SMALL)
    twin._batch_size, twin._seed = 4, 0
    steps = list(twin.epoch_batches(0))
    assert len(steps) == 3
    seen = set()

    def raw(batch, field):
        return batch[field] * getattr(twin, f"{field}_std_0") + getattr(twin, f"{field}_mean_0")

    for (batch,) in steps:
        stim = batch["stimuli"] * twin.stim_std_0.reshape(1, -1, 1, 1, 1) + twin.stim_mean_0.reshape(1, -1, 1, 1, 1)
        stim = stim[:, 0, :, 0, 0]  # (trials, clip)
        assert stim.shape == (4, 8) and batch["responses"].shape == (4, 5, neurons)
        torch.testing.assert_close(batch["responses"][..., 0], stim[:, 3:])
        torch.testing.assert_close(raw(batch, "behavior")[..., 0], stim, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(raw(batch, "gaze")[..., 1], stim, rtol=1e-4, atol=1e-3)
        assert torch.all(torch.diff(stim, dim=1) == 1)  # consecutive frames
        assert batch["burn_in"] == 3 and batch["likelihood_scale"] == pytest.approx(20 / 5)
        seen |= set((stim[:, 0] // 100).int().tolist())
    assert seen == set(range(n))  # every trial once an epoch

    # by default a clip from inside a trial leaves the twin's past frames unscored (at most half
    # the clip); a clip that is a whole trial is scored from its first frame, as predicted
    inside = pt.VideoTwin(rec, likelihood="normal", clip_frames=12, position_init="uniform", **SMALL)
    assert inside.past_frames == 4 + 2 + 6 and inside.config["burn_in"] == 6
    whole = pt.VideoTwin(rec, likelihood="normal", clip_frames=frames, position_init="uniform", **SMALL)
    whole._batch_size, whole._seed = 4, 0
    (batch,) = next(iter(whole.epoch_batches(0)))
    assert whole.config["burn_in"] == 0 and batch["likelihood_scale"] == pytest.approx(1.0)
    assert [default_burn_in(c, 300, 18) for c in (300, 60, 20)] == [0, 18, 10]  # the baseline's rule too
    torch.testing.assert_close(batch["responses"][..., 0], torch.as_tensor(responses[batch["index"].numpy(), :, 0]))


def test_fit_learns_per_frame_responses(fitted, sim):
    twin, history = fitted
    assert history.best_score > history["validation"][0]
    test = sim.recording.split("test")
    truth = sim.truth["mean_response"][test.trial_index]
    y = np.asarray(test.responses)
    ceiling = np.nanmean(pt.metrics.single_trial_correlation(y, truth))
    scores = twin.evaluate(sim.recording, "test", num_samples=30)
    assert 0.35 * ceiling < scores["single_trial_correlation"] <= ceiling + 0.02
    per_value = sim.truth["log_likelihood"][test.trial_index].sum() / y.size / np.log(2)
    assert scores["log_likelihood_bits"] < per_value + 0.05  # no model beats the truth by much
    pred = twin.predict(test, num_samples=8)
    assert pred.samples.shape == (8, test.n_trials, 24, 24)
    assert twin.sample(test, num_samples=3).shape == (3, test.n_trials, 24, 24)


def test_log_predictive_sums_each_trials_frames(fitted, sim):
    """Per frame, the Poisson twin's log predictive density is log mean_s p(y | theta_s) summed
    over neurons: recomputed from the posterior draws of the mean, trial by trial."""
    twin, _ = fitted
    test = sim.recording.split("test")
    lp = twin.log_predictive(test, num_samples=20, seed=4)
    mean = torch.as_tensor(twin.predict(test, num_samples=20, seed=4).samples, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(test.responses), dtype=torch.float64)
    per_draw = torch.distributions.Poisson(mean).log_prob(y)  # (draws, trials, frames, neurons)
    expected = (torch.logsumexp(per_draw, 0) - np.log(20)).sum((1, 2))
    np.testing.assert_allclose(lp, expected.numpy(), rtol=1e-4)


def test_save_and_load_predict_the_same(fitted, sim, tmp_path):
    twin, _ = fitted
    twin.save(tmp_path / "video.pt")
    loaded = pt.load(tmp_path / "video.pt")
    assert isinstance(loaded, pt.VideoTwin) and loaded.config["clip_frames"] == 16
    test = sim.recording.split("test")
    np.testing.assert_allclose(loaded.predict(test, num_samples=4).samples, twin.predict(test, num_samples=4).samples)
    assert loaded.config["retinal"]
    payload = torch.load(tmp_path / "video.pt", weights_only=True)
    del payload["config"]["retinal"]  # a twin saved before the frames were moved by gaze
    torch.save(payload, tmp_path / "older.pt")
    assert not pt.load(tmp_path / "older.pt").config["retinal"]  # it moved its readout
    # a twin saved before the readout's lags read each frame's features alone, and loads so
    one = pt.VideoTwin(sim.recording, clip_frames=16, **SMALL, **ONE_LAG)
    one.save(tmp_path / "one.pt")
    payload = torch.load(tmp_path / "one.pt", weights_only=True)
    for key in ONE_LAG:
        del payload["config"][key]
    torch.save(payload, tmp_path / "before_lags.pt")
    before = pt.load(tmp_path / "before_lags.pt")
    assert {key: before.config[key] for key in ONE_LAG} == ONE_LAG
    torch.manual_seed(0)
    expected = one.predict(test, num_samples=2).samples
    torch.manual_seed(0)
    np.testing.assert_allclose(before.predict(test, num_samples=2).samples, expected, rtol=1e-5)


def test_flow_noise_has_a_per_frame_latent_state():
    sim = pt.simulate.video(
        n_neurons=12,
        n_trials=24,
        n_frames=16,
        image_size=(12, 12),
        seed=4,
        likelihood="lognormal",
        correlated_noise_rank=2,
    )
    twin = pt.VideoTwin(sim.recording, noise="flow", latent_rank=2, clip_frames=12, **SMALL)
    twin.fit(max_epochs=2, batch_size=8, progress=False)
    scores = twin.evaluate(sim.recording, "test", num_samples=10)
    assert scores["log_likelihood_kind"] == "analytic" and np.isfinite(scores["log_likelihood_bits"])
    assert "conditional_correlation" in scores


def test_an_ar1_flow_recovers_how_the_state_persists(tmp_path):
    """latent_ar1=True: a flow whose latent state is an AR(1) process over frames, fitted on a
    simulation whose state persists (rho = 0.8), learns rho; it scores the held-out frames
    above the same twin with its state drawn anew each frame (rho = 0) and below the truth,
    smooths each frame's state onto the true one, and saves and loads with its rho."""
    from probtwin.bench.noise import canonical_correlations

    sim = pt.simulate.video(
        n_neurons=24,
        n_trials=60,
        n_frames=24,
        image_size=(16, 20),
        likelihood="lognormal",
        correlated_noise_rank=2,
        latent_ar1=0.8,
        seed=3,
    )
    rec, test = sim.recording, sim.recording.split("test")
    twin = pt.VideoTwin(rec, noise="flow", latent_rank=2, latent_ar1=True, clip_frames=16, **SMALL)
    twin.fit(max_epochs=30, lr=0.01, progress=False)
    np.testing.assert_allclose(twin.noise[0].rho.detach().numpy(), 0.8, atol=0.1)
    bits = twin.evaluate(rec, "test", num_samples=20)["log_likelihood_bits"]
    truth = sim.truth["log_likelihood"][test.trial_index].sum() / np.asarray(test.responses).size / np.log(2)
    state = twin.latent_state(rec, "test")
    assert state["mean"].shape == (test.n_trials, 24, 2)
    true_state = sim.truth["latent_state"][test.trial_index]
    assert canonical_correlations(state["mean"].reshape(-1, 2), true_state.reshape(-1, 2))[0] > 0.9

    y, half = np.asarray(test.responses), np.arange(12)  # the other half smooths each frame's state
    given = twin.predict(test, num_samples=10, given=(half, y[..., half])).mean
    plain = twin.predict(test, num_samples=10).mean[..., 12:]
    r_given, r_plain = (np.nanmean(pt.metrics.single_trial_correlation(y[..., 12:], m)) for m in (given, plain))
    assert r_given > r_plain + 0.05

    twin.save(tmp_path / "ar1.pt")
    loaded = pt.load(tmp_path / "ar1.pt")
    assert loaded.config["latent_ar1"]
    torch.testing.assert_close(loaded.noise[0].rho, twin.noise[0].rho)
    lp = twin.log_predictive(test, num_samples=4)
    np.testing.assert_allclose(loaded.log_predictive(test, num_samples=4), lp, rtol=1e-5)
    with torch.no_grad():
        loaded.noise[0].raw_rho.fill_(-40.0)  # the same twin, its state drawn anew each frame
    anew = loaded.evaluate(rec, "test", num_samples=20)["log_likelihood_bits"]
    assert anew + 0.02 < bits < truth + 0.05


@pytest.fixture(scope="module")
def count_sim():
    """Poisson counts whose log rates share a two-dimensional state drawn anew each frame."""
    return pt.simulate.video(
        n_neurons=24,
        n_trials=60,
        n_frames=24,
        image_size=(16, 20),
        mean_rate=3.0,
        likelihood="poisson",
        correlated_noise_rank=2,
        noise_scale=2.0,
        seed=7,
    )


def test_latent_counts_have_a_per_frame_latent_state(count_sim):
    """noise='latent' per frame: a state h_tf per frame with an amortized guide scaled as its
    clip's frames are; it beats independent Poisson noise on held-out frames, predicts half the
    population from the other half, and its posterior follows the simulated per-frame state."""
    from probtwin.bench.noise import canonical_correlations

    rec = count_sim.recording
    twins, scores = {}, {}
    for noise, rank in (("latent", 2), ("independent", 0)):
        twins[noise] = pt.VideoTwin(rec, noise=noise, latent_rank=rank, clip_frames=16, **SMALL)
        twins[noise].fit(max_epochs=30, lr=0.01, progress=False)
        scores[noise] = twins[noise].evaluate(rec, "test", num_samples=30)
    latent = scores["latent"]
    assert latent["log_likelihood_kind"] == "importance-weighted bound" and latent["log_likelihood_mc_error"] > 0
    assert latent["log_likelihood_bits"] > scores["independent"]["log_likelihood_bits"] + 0.5
    assert latent["conditional_correlation"] > latent["single_trial_correlation"] + 0.05

    twin = twins["latent"]
    state = twin.latent_state(rec, "test")
    test = rec.split("test")
    assert state["mean"].shape == (test.n_trials, 24, 2) and np.all(state["sd"] > 0)
    truth = count_sim.truth["latent_state"][test.trial_index]
    assert canonical_correlations(state["mean"].reshape(-1, 2), truth.reshape(-1, 2))[0] > 0.6

    # the other half of the population on the same frames sharpens the prediction of each neuron
    half = np.arange(12)
    y = np.asarray(test.responses)
    given = twin.predict(test, num_samples=20, given=(half, y[..., half]))
    plain = twin.predict(test, num_samples=20)
    assert given.samples.shape == (20, test.n_trials, 24, 12) and list(given.neuron_ids) == list(range(12, 24))
    r_given = np.nanmean(pt.metrics.single_trial_correlation(y[..., 12:], given.mean))
    r_plain = np.nanmean(pt.metrics.single_trial_correlation(y[..., 12:], plain.mean[..., 12:]))
    assert r_given > r_plain + 0.05
    with pytest.raises(pt.DataError, match="given"):
        twin.predict(test, given=(half, y[:, 0, half]))  # one value a trial, not one a frame
    # each neuron's pointwise log-likelihood per frame (ArviZ)
    pointwise = twin.to_arviz(rec, "test", num_samples=3).log_likelihood["responses"]
    assert pointwise.dims[-3:] == ("trial", "frame", "neuron") and pointwise.shape[-3:] == (test.n_trials, 24, 24)
    assert np.isfinite(pointwise.values).all()

    # the guide's per-frame state carries the scale of the model's: a clip stands for its trial
    (batch,) = next(iter(twin.epoch_batches(0)))
    guide = pyro.poutine.trace(twin.guide).get_trace(batch)
    model = pyro.poutine.trace(pyro.poutine.replay(twin.model, trace=guide)).get_trace(batch)
    site = guide.nodes["latent_0"]
    assert site["value"].shape == (len(batch["index"]), 16 - twin.config["burn_in"], 2)
    assert site["scale"] == model.nodes["latent_0"]["scale"] != 1.0


def test_bad_input_is_a_data_error(sim):
    images = pt.simulate.v1(n_neurons=5, n_images=20, seed=0).recording
    with pytest.raises(pt.DataError, match="videos"):
        pt.VideoTwin(images)
    with pytest.raises(pt.DataError, match="noise"):
        pt.VideoTwin(sim.recording, noise="lognormal")
    for bad in ({"noise": "latent", "latent_rank": 1}, {"noise": "flow", "latent_rank": 0}):
        with pytest.raises(pt.DataError, match="latent_ar1"):  # only a flow's latent state persists
            pt.VideoTwin(sim.recording, latent_ar1=True, **bad, **SMALL)
    for bad in ({"latent_ar1": 1.0, "correlated_noise_rank": 1}, {"latent_ar1": 0.5}):
        with pytest.raises(pt.DataError, match="latent_ar1"):
            pt.simulate.video(n_neurons=4, n_trials=2, n_frames=12, **bad)
    with pytest.raises(pt.DataError, match="clip_frames"):
        pt.VideoTwin(sim.recording, clip_frames=25, **SMALL)
    with pytest.raises(pt.DataError, match="burn_in"):
        pt.VideoTwin(sim.recording, clip_frames=10, burn_in=10, **SMALL)
    for bad in ({"readout_lags": 0}, {"readout_basis": 2.5}):
        with pytest.raises(pt.DataError, match=next(iter(bad))):
            pt.VideoTwin(sim.recording, **bad, **SMALL)
    rec = sim.recording
    with pytest.raises(pt.DataError, match="frames"):  # frame counts that differ
        pt.Recording(np.asarray(rec.stimuli)[:, :, :20], np.asarray(rec.responses))
    y = np.asarray(rec.responses).copy()
    y[0, 5, 1] = np.nan  # NaN inside a trial
    with pytest.raises(pt.DataError, match="responses"):
        pt.Recording(np.asarray(rec.stimuli), y)
    twin = pt.VideoTwin(sim.recording, **SMALL)
    with pytest.raises(pt.DataError, match="stimuli"):
        twin.predict(np.zeros((2, 1, 24, 16, 21)))  # another width
    assert twin.predict(np.zeros((2, 1, 30, 16, 20)), num_samples=2).samples.shape == (2, 2, 30, 24)  # any length


def test_for_a_still_eye_moving_the_frames_is_moving_the_readout(sim):
    """A shift of whole pixels, applied to the frames (retinal) or to the readout positions,
    gives the same locations at fields far from the edges while the eye stays still; after a
    jump the two differ for as long as the core's temporal window holds frames from before it
    (the retinal core sees the jump), and agree again after."""
    import copy

    twin = pt.VideoTwin(sim.recording, **SMALL)
    assert twin.config["retinal"]
    twin.eval()
    height, width = sim.recording.stimulus_shape[-2:]
    pixel = torch.tensor([2 / width, 2 / height])
    threshold = float((0.75 - twin.gaze_mean_0[0]) / twin.gaze_std_0[0])  # standardised gaze x of 0.75

    class Steps(torch.nn.Module):  # one pixel right and down; two right once gaze x passes 0.75
        def forward(self, gaze):
            return pixel * torch.stack([1 + (gaze[:, 0] > threshold).float(), torch.ones(len(gaze))], -1)

    twin.readouts[0].shifter = Steps()
    moved = copy.deepcopy(twin)
    moved.config["retinal"] = False
    stimuli = np.asarray(sim.recording.split("test").stimuli)[:4]
    still = np.zeros((4, stimuli.shape[2], 2), np.float32)
    jumps = still.copy()
    jumps[:, 10:] = 1.5  # a saccade at frame 10
    torch.manual_seed(0)
    n = sim.recording.n_neurons
    position = torch.zeros(n, 2)  # every field at the centre, 4 pixels of reach from every edge
    weights, bias = torch.randn(n, twin.readouts[0].weight_loc.shape[1]), torch.zeros(n)

    def locations(model, gaze):
        with torch.no_grad():
            batch = model._batch(0, {"stimuli": stimuli, "gaze": gaze})
            return model._location(batch, position, weights, bias)

    frame_moved = locations(twin, still)
    torch.testing.assert_close(frame_moved, locations(moved, still), rtol=1e-4, atol=1e-4)
    retinal, screen = locations(twin, jumps), locations(moved, jumps)
    window = twin.past_frames  # frames of the past each location sees
    torch.testing.assert_close(retinal[:, :10], screen[:, :10], rtol=1e-4, atol=1e-4)
    assert (retinal - screen)[:, 10 : 10 + window].abs().amax((0, 2)).min() > 1e-3
    torch.testing.assert_close(retinal[:, 10 + window :], screen[:, 10 + window :], rtol=1e-4, atol=1e-4)
    twin.readouts[0].shifter = None  # without the shift the same fields read other pixels
    assert not torch.allclose(locations(twin, still), frame_moved, rtol=1e-3, atol=1e-3)


def test_a_whole_twin_posterior_carries_into_video_predictions():
    sim = pt.simulate.video(n_neurons=6, n_trials=16, n_frames=16, image_size=(12, 16), seed=1)
    twin = pt.VideoTwin(sim.recording, posterior="ensemble", members=2, combination="mixture", clip_frames=12, **SMALL)
    twin.fit(max_epochs=1, progress=False)
    assert len(twin.members) == 2
    test = sim.recording.split("test")
    draws = twin.predict(test, num_samples=4).samples  # two draws from each member
    assert draws.shape == (4, test.n_trials, 16, 6)
    # the members' cores differ: the draws of one member agree more with each other than across
    within = np.abs(draws[0] - draws[1]).mean()
    across = np.abs(draws[0] - draws[2]).mean()
    assert across > within


def _cut(rec, lengths, fill=np.nan, inputs_fill=np.nan):
    """``rec`` with each trial ended at ``lengths``: responses NaN after, inputs ``inputs_fill``."""
    after = ~pt.data.frame_mask(lengths, rec.n_frames)

    def cut(values, axis, value):
        values = np.array(values, dtype=np.float32)
        shape = [1] * values.ndim
        shape[0], shape[axis] = len(lengths), rec.n_frames
        return np.where(after.reshape(shape), value, values)

    return pt.Recording(
        cut(rec.stimuli, 2, inputs_fill),
        cut(rec.responses, 1, fill),
        behavior=cut(rec.behavior, 1, inputs_fill),
        gaze=cut(rec.gaze, 1, inputs_fill),
        tiers=rec.tiers,
        stimulus_ids=rec.stimulus_ids,
        name=rec.name,
    )


def test_trials_of_unequal_length(sim):
    """NaN-padded trials: clips score a trial's own frames only, whatever the padding holds; a
    padded trial's log density is that of the trial cut to its length; no prediction past a
    trial's end."""
    lengths = np.random.default_rng(0).integers(10, 25, sim.recording.n_trials)
    padded = _cut(sim.recording, lengths)
    assert padded.padded and padded.frame_counts.tolist() == lengths.tolist()
    other = _cut(sim.recording, lengths, inputs_fill=7.0)  # movies padded with a grey screen
    twin, grey = (pt.VideoTwin(r, clip_frames=16, **SMALL) for r in (padded, other))
    for t in (twin, grey):
        t._batch_size, t._seed = 8, 0
    for a, b in zip(twin.epoch_batches(0), grey.epoch_batches(0)):
        (a,), (b,) = a, b
        for key in ("stimuli", "responses", "behavior", "gaze", "frame_mask", "likelihood_scale"):
            torch.testing.assert_close(a[key], b[key])
    batch = next(iter(twin.epoch_batches(1)))[0]
    trials = lengths[twin.recordings[0].split("train").trial_index][batch["index"].numpy()]
    scored = batch["frame_mask"].sum(1).numpy()
    np.testing.assert_array_equal(scored, np.minimum(trials, 16) - twin.config["burn_in"])
    np.testing.assert_allclose(batch["likelihood_scale"].numpy(), trials / scored, rtol=1e-6)

    twin.fit(max_epochs=3, lr=0.01, progress=False)
    i = int(np.flatnonzero(lengths < 20)[0])
    cut = pt.Recording(
        *(np.asarray(x[[i]])[:, :, : lengths[i]] for x in (sim.recording.stimuli,)),
        np.asarray(sim.recording.responses[[i]])[:, : lengths[i]],
        behavior=np.asarray(sim.recording.behavior[[i]])[:, : lengths[i]],
        gaze=np.asarray(sim.recording.gaze[[i]])[:, : lengths[i]],
        name=padded.name,
    )
    np.testing.assert_allclose(
        twin.log_predictive(padded.subset([i]), num_samples=8), twin.log_predictive(cut, num_samples=8), rtol=1e-5
    )
    prediction = twin.predict(padded, num_samples=3)
    recorded = pt.data.frame_mask(lengths, padded.n_frames)
    assert np.isnan(prediction.samples[:, ~recorded]).all() and np.isfinite(prediction.samples[:, recorded]).all()
    scores = twin.evaluate(padded, num_samples=8)
    assert np.isfinite(scores["single_trial_correlation"]) and np.isfinite(scores["log_likelihood_bits"])
    out = twin.recalibrate(padded, tier=None, num_samples=8, steps=3)  # each trial's recorded frames
    assert np.isfinite(out["pooled"]) and np.all(np.isfinite(out["spread"]) & (out["spread"] >= 1))
    assert np.isnan(twin.sample(padded.split("test"), num_samples=2)[:, ~recorded[padded.tiers == "test"]]).all()
    intact, _ = twin.intervene(padded.split("test"), {"bias_0": np.zeros(24)}, num_samples=2)
    assert np.isnan(intact.samples[:, ~recorded[padded.tiers == "test"]]).all()
    with pytest.raises(pt.DataError, match="equal length"):
        twin.to_arviz(padded, "test", num_samples=2)

    # a per-frame latent state: a padding frame keeps the prior in the guide (adding nothing to
    # the bound) and has no posterior state
    latent = pt.VideoTwin(padded, noise="latent", latent_rank=2, clip_frames=16, **SMALL)
    latent._batch_size, latent._seed = 8, 0
    (batch,) = next(iter(latent.epoch_batches(1)))
    site = pyro.poutine.trace(latent.guide).get_trace(batch).nodes["latent_0"]["fn"].base_dist
    padding = ~batch["frame_mask"]
    assert padding.any() and (site.loc[padding] == 0).all() and (site.scale[padding] == 1).all()
    assert (site.scale[~padding] != 1).all()
    latent.fit(max_epochs=2, lr=0.01, progress=False)
    state = latent.latent_state(padded, tier=None)["mean"]
    assert np.isnan(state[~recorded]).all() and np.isfinite(state[recorded]).all()
    assert np.isfinite(latent.evaluate(padded, num_samples=8)["log_likelihood_bits"])


def test_spatiotemporal_receptive_fields_recover_the_simple_cells_filters(fitted, sim):
    """The gradient of the last frame's response at a blank movie, per lag and pixel, is a
    simple cell's space-time filter (its drive is linear in the movie); a complex cell has none
    at a blank screen. Nothing earlier than the twin's history (its core's and readout's lags)
    reaches the response."""
    twin, _ = fitted
    history = twin.past_frames  # the core's history and the readout's lags
    assert history == twin.core.history + twin.config["readout_lags"] - 1
    rf = pt.experiments.receptive_fields(twin, "gradient", num_samples=4, lags=history + 3)
    assert rf.dims == ("sample", "neuron", "channel", "lag", "y", "x")
    assert rf.shape == (4, 24, 1, history + 3, 16, 20)
    assert np.all(rf.values[:, :, :, history + 1 :] == 0)  # causal and of finite memory
    assert not np.all(rf.values[:, :, :, history] == 0)
    mean = rf.mean("sample").isel(channel=0).values[:, :12]  # (neurons, the simulator's 12 lags, y, x)
    even, _ = sim.population.filters()  # (neurons, 12 lags, pixels)
    flat = np.all(mean == 0, axis=(1, 2, 3))  # no gradient at a blank screen: no filter
    similarity = np.array([0.0 if f else np.corrcoef(m.ravel(), e.ravel())[0, 1] for m, e, f in zip(mean, even, flat)])
    simple = ~sim.truth["complex_cell"]
    assert np.median(similarity[simple]) > 0.4  # measured 0.44 (0.58 before the readout's lags)
    assert np.median(similarity[simple]) > 3 * np.median(np.abs(similarity[~simple]))
    with pytest.raises(pt.DataError, match="gradient"):
        pt.experiments.receptive_fields(twin, "sparse_noise")
    with pytest.raises(pt.DataError, match="lags"):
        pt.experiments.receptive_fields(twin, "gradient", lags=0)


def test_the_most_exciting_movie_keeps_its_norm_and_beats_the_recorded_movies(fitted, sim):
    twin, _ = fitted
    p = twin.readout_positions()  # neurons whose every posterior position lies well inside the screen
    inside = np.all((p["lower"] > 2) & (p["upper"] < np.array([20, 16]) - 3), axis=1)
    neurons = np.flatnonzero(inside)[:2].tolist()
    assert len(neurons) == 2
    history = twin.past_frames
    frames = history + 4
    ds = pt.experiments.mei(twin, neurons, num_samples=2, steps=150, eval_samples=10, frames=frames)
    assert ds["movie"].dims == ("sample", "neuron", "channel", "frame", "y", "x")
    assert ds["movie"].shape == (2, 2, 1, frames, 16, 20) and ds.attrs["scored_from_frame"] == history
    mean = float(twin.stim_mean_0)
    norms = np.sqrt(((ds["movie"].values - mean) ** 2).sum(axis=(2, 3, 4, 5)))
    np.testing.assert_allclose(norms, ds.attrs["norm"], rtol=1e-4)
    # the recorded movies, cut to the same length and scaled to the same norm, drive less
    movies = np.asarray(sim.recording.stimuli)[:, :, :frames]
    movies = (
        mean
        + (movies - mean)
        * ds.attrs["norm"]
        / np.sqrt(((movies - mean) ** 2).sum(axis=(1, 2, 3, 4)))[:, None, None, None, None]
    )
    recorded = twin.predict(movies, num_samples=10).mean[:, history:, neurons].mean(1)  # (movies, neurons)
    assert np.all(ds["activation_mean"].values > recorded.max(0))
    with pytest.raises(pt.DataError, match="frames"):
        pt.experiments.mei(twin, neurons, frames=history)


def test_the_peak_between_frames_is_the_parabolas_vertex():
    from probtwin.experiments.temporal import _peak

    lags = np.arange(8.0)
    profiles = np.stack([-((lags - 2.3) ** 2), -((lags - 5.5) ** 2), -lags, lags])
    np.testing.assert_allclose(_peak(profiles)[:, 0], [2.3, 5.5, 0.0, 7.0])


class _KnownKernel(torch.nn.Module):
    """A causal core with one feature, ``sum_tau k(tau) x(t - tau)``: its receptive field has
    energy ``k(tau)^2`` at lag ``tau`` for every neuron and draw (up to a per-neuron factor)."""

    out_channels = 1

    def __init__(self, kernel):
        super().__init__()
        self.register_buffer("kernel", torch.as_tensor(kernel, dtype=torch.float32))
        self.history = len(kernel) - 1

    def forward(self, x):  # (n, 1, frames, H, W) -> the same
        padded = torch.nn.functional.pad(x, (0, 0, 0, 0, self.history, 0))
        lags = torch.stack([padded[:, :, self.history - t : padded.shape[2] - t] for t in range(len(self.kernel))])
        return torch.tanh((self.kernel.reshape(-1, 1, 1, 1, 1, 1) * lags).sum(0))


def test_kernel_latency_is_the_peak_of_a_known_kernel(sim):
    """A twin whose core filters time with a known kernel: every neuron's latency is the vertex of
    the parabola through the kernel's energy at its peak, in every posterior draw, at any movie
    (the readout reads the frame alone: no lags of its own)."""
    kernel = [0.0, 0.1, 0.5, 1.0, 0.8, 0.0]
    energy = np.square(kernel)
    vertex = 3 + 0.5 * (energy[2] - energy[4]) / (energy[2] - 2 * energy[3] + energy[4])
    twin = pt.VideoTwin(
        sim.recording, core=_KnownKernel(kernel), behavior_in_core=False, position_init="uniform", **ONE_LAG
    )
    latency = pt.experiments.kernel_latency(twin, num_samples=3)  # at the first train movies
    assert latency.dims == ("sample", "neuron") and latency.shape == (3, 24)
    np.testing.assert_allclose(latency.values, vertex, atol=1e-3)
    padded = _cut(sim.recording, np.random.default_rng(1).integers(5, 25, sim.recording.n_trials))
    on_padded = pt.VideoTwin(
        padded, core=_KnownKernel(kernel), behavior_in_core=False, position_init="uniform", **ONE_LAG
    )
    np.testing.assert_allclose(pt.experiments.kernel_latency(on_padded, num_samples=2).values, vertex, atol=1e-3)
    twin.recordings = []  # a loaded twin: the blank screen
    np.testing.assert_allclose(
        pt.experiments.kernel_latency(twin, num_samples=2, neurons=[0, 3]).values, vertex, atol=1e-3
    )
    with pytest.raises(pt.DataError, match="movies"):
        pt.experiments.kernel_latency(twin, np.zeros((2, 1, 3, 16, 20)))
    with pytest.raises(pt.DataError, match="NaN"):
        pt.experiments.kernel_latency(twin, np.asarray(padded.stimuli[:2]))


class _LearnedKernel(_KnownKernel):
    """The known kernel as a parameter, so that members of an ensemble can hold their own."""

    def __init__(self, kernel):
        super().__init__(kernel)
        del self.kernel
        self.kernel = torch.nn.Parameter(torch.as_tensor(kernel, dtype=torch.float32))


def test_an_ensembles_kernel_latency_combines_the_members_latencies(sim):
    """Two members whose kernels peak one frame apart: as drawn, each draw has its member's
    latency; combined as Student-t, the draws centre on the members' mean and spread beyond them."""
    kernel = [0.0, 0.1, 0.5, 1.0, 0.8, 0.0]
    energy = np.square(kernel)
    vertex = 3 + 0.5 * (energy[2] - energy[4]) / (energy[2] - 2 * energy[3] + energy[4])
    twin = pt.VideoTwin(
        sim.recording, core=_LearnedKernel(kernel), behavior_in_core=False, position_init="uniform",
        posterior="ensemble", members=2, **ONE_LAG,
    )  # fmt: skip
    earlier = torch.tensor(kernel[1:] + [0.0])  # the same kernel one frame earlier
    twin.members = [{"core.kernel": torch.tensor(kernel)}, {"core.kernel": earlier}]
    assert twin.combination == "student"
    combined = pt.experiments.kernel_latency(twin, num_samples=8, neurons=[0, 3]).values
    twin.combination = "mixture"
    drawn = pt.experiments.kernel_latency(twin, num_samples=8, neurons=[0, 3]).values
    np.testing.assert_allclose(drawn[:4], vertex, atol=1e-3)
    np.testing.assert_allclose(drawn[4:], vertex - 1, atol=1e-3)
    np.testing.assert_allclose(combined.mean(0), vertex - 0.5, atol=1e-3)  # antithetic pairs
    np.testing.assert_allclose(combined[:, 0], combined[:, 1], atol=1e-3)  # one weight a draw
    assert combined.max() - combined.min() > 1.5  # the t spread: beyond the two members' values


def test_interventions_and_arviz_per_frame(fitted, sim):
    """``intervene`` and ``to_arviz`` of a video twin keep the frames: with the feature weights set
    to zero the movies no longer matter (equal states give equal responses in every frame)."""
    twin, _ = fitted
    movies = np.asarray(sim.recording.stimuli[:3])
    zero = np.zeros((24, twin.config["hidden_channels"] * twin.config["readout_basis"]))  # a weight vector per bump
    intact, forced = twin.intervene(movies, {"weights_0": zero}, num_samples=3)
    assert intact.samples.shape == forced.samples.shape == (3, 3, 24, 24)
    np.testing.assert_allclose(forced.samples[:, 0], forced.samples[:, 2], rtol=1e-5)
    assert not np.allclose(intact.samples[:, 0], intact.samples[:, 2])
    idata = twin.to_arviz(sim.recording, "test", num_samples=2)
    assert idata.log_likelihood["responses"].dims == ("chain", "draw", "trial", "frame", "neuron")
    assert np.isfinite(idata.log_likelihood["responses"].values).all()
