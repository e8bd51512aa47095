import numpy as np
import pytest
import torch

import probtwin as pt
from probtwin.nn.video_core import ConvGRU, FactorizedCore3d

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


def test_bad_input_is_a_data_error(sim):
    images = pt.simulate.v1(n_neurons=5, n_images=20, seed=0).recording
    with pytest.raises(pt.DataError, match="videos"):
        pt.VideoTwin(images)
    with pytest.raises(pt.DataError, match="noise"):
        pt.VideoTwin(sim.recording, noise="latent", latent_rank=1)
    with pytest.raises(pt.DataError, match="clip_frames"):
        pt.VideoTwin(sim.recording, clip_frames=25, **SMALL)
    with pytest.raises(pt.DataError, match="burn_in"):
        pt.VideoTwin(sim.recording, clip_frames=10, burn_in=10, **SMALL)
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


def test_a_whole_twin_posterior_carries_into_video_predictions():
    sim = pt.simulate.video(n_neurons=6, n_trials=16, n_frames=16, image_size=(12, 16), seed=1)
    twin = pt.VideoTwin(sim.recording, posterior="ensemble", members=2, clip_frames=12, **SMALL)
    twin.fit(max_epochs=1, progress=False)
    assert len(twin.members) == 2
    test = sim.recording.split("test")
    draws = twin.predict(test, num_samples=4).samples  # two draws from each member
    assert draws.shape == (4, test.n_trials, 16, 6)
    # the members' cores differ: the draws of one member agree more with each other than across
    within = np.abs(draws[0] - draws[1]).mean()
    across = np.abs(draws[0] - draws[2]).mean()
    assert across > within
