import numpy as np
import pytest

import probtwin as pt
from probtwin.bench import noise


def test_canonical_correlations_see_through_rotations():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 3))
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    cc = noise.canonical_correlations(a @ rotation * [1.0, 5.0, 0.2] + 0.01 * rng.normal(size=(2000, 3)), a)
    np.testing.assert_allclose(cc, 1.0, atol=5e-3)
    assert np.all(noise.canonical_correlations(rng.normal(size=(2000, 2)), a) < 0.1)


def test_oracle_poisson_scores_test_trials_with_the_other_repeats():
    y = np.array([[1.0], [3.0], [2.0], [0.0], [4.0], [5.0]])
    ids = np.array([0, 0, 0, 1, 1, 1])
    tiers = np.array(["train", "validation", "test", "train", "train", "test"])
    images = np.zeros((6, 1, 4, 4))
    rec = pt.Recording(images, y, stimulus_ids=ids, tiers=tiers)
    expected = (np.log(np.exp(-2.0) * 2.0**2 / 2) + np.log(np.exp(-2.0) * 2.0**5 / 120)) / 2 / np.log(2)
    out = noise.oracle_scores(rec)
    assert out["oracle_poisson_bits"] == pytest.approx(expected) and out["test_trials"] == 2
    only_test = pt.Recording(images, y, stimulus_ids=np.arange(6), tiers=tiers)
    with pytest.raises(pt.DataError, match="tiers"):
        noise.oracle_scores(only_test)


def test_oracle_reproduces_the_v4_reference(shared_data, monkeypatch):
    monkeypatch.setenv("PROBTWIN_DATA", str(shared_data))
    rec = noise._held_out_repeats(pt.datasets.cowley_v4("210325", trials="raw", image_size=28))
    assert noise.oracle_scores(rec)["oracle_poisson_bits"] == pytest.approx(-2.377, abs=5e-4)  # the figure


def test_flow_benchmark_scores_against_the_true_model():
    settings = dict(n_neurons=12, n_images=20, repeats=4, rank=2, image_size=(18, 32))
    out = noise.run_flow_noise(**settings, max_epochs=1, hidden_channels=4)
    # the truth, recomputed from the same simulation: the last presentations of every image held out
    sim = pt.simulate.v1(
        **{k: settings[k] for k in ("n_neurons", "n_images", "repeats", "image_size")},
        seed=0,
        likelihood="lognormal",
        correlated_noise_rank=2,
        noise_scale=5.0,
    )
    test = pt.data.split_by_repeat(sim.recording.stimulus_ids) == "test"
    true_bits = sim.truth["log_likelihood"][test].sum() / test.sum() / 12 / np.log(2)
    assert out["true_bits"] == pytest.approx(true_bits, rel=1e-9)
    for name in ("flow", "flow_rank0", "independent_normal"):  # a model fitted for one epoch: below the truth
        assert out[f"{name}_bits"] < true_bits
    assert out["noise_model_gap_bits"] > -0.05  # the noise model given the true mean cannot beat the truth


def test_the_noise_model_alone_reaches_the_true_likelihood():
    sim = pt.simulate.v1(
        n_neurons=30,
        n_images=150,
        repeats=10,
        image_size=(18, 32),
        likelihood="lognormal",
        correlated_noise_rank=2,
        noise_scale=5.0,
        seed=1,
    )
    out = noise.flow_given_true_mean(sim, steps=600, lr=0.03)
    assert abs(out["noise_model_gap_bits"]) < 0.05


def test_step_scaling_times_both_twins():
    out = noise.step_scaling(neurons=(20, 40), rank=2, steps=1, batch_size=8)
    assert set(out) >= {"flow_20", "flow_40", "independent_20", "independent_40", "flow_growth", "neuron_ratio"}
    assert all(out[k] > 0 for k in ("flow_20", "flow_40", "noise_only_20", "noise_only_40"))
    for name in ("flow", "independent"):  # the ratios are those of the times measured in the same run
        assert out[f"{name}_growth"] == pytest.approx(out[f"{name}_40"] / out[f"{name}_20"])
    assert out["neuron_ratio"] == 2.0


@pytest.mark.parametrize("model", ["latent", "ar1"])
def test_video_noise_benchmark_scores_both_sides_against_the_truth(model):
    settings = dict(n_neurons=10, n_trials=12, n_frames=12, rank=2)
    out = noise.run_video_noise(model, seed=0, **settings, time_limit=2.0, num_samples=5)
    first, second = ("latent", "independent") if model == "latent" else ("ar1", "per_frame")
    assert out["gain_bits"] == pytest.approx(out[f"{first}_log_likelihood_bits"] - out[f"{second}_log_likelihood_bits"])
    assert out[f"{first}_epochs"] >= 1 and 0 <= out[f"{first}_state_canonical_correlation"] <= 1
    # the truth, recomputed: the mean given the true state predicts better than the mean alone
    options = (
        dict(likelihood="poisson", noise_scale=2.0)
        if model == "latent"
        else dict(likelihood="lognormal", latent_ar1=0.8)
    )
    sim = pt.simulate.video(10, 12, 12, seed=0, correlated_noise_rank=2, **options)
    test = sim.recording.split("test")
    y = np.asarray(test.responses)
    true = np.nanmean(pt.metrics.single_trial_correlation(y, sim.truth["mean_response"][test.trial_index]))
    assert out["true_model"] == pytest.approx(true) and out["true_given_state"] > out["true_model"]
    if model == "ar1":
        assert out["true_bits"] == pytest.approx(
            sim.truth["log_likelihood"][test.trial_index].sum() / y.size / np.log(2)
        )
        assert all(0 <= out[f"ar1_rho_{d}"] < 1 for d in range(2))
    with pytest.raises(pt.DataError, match="model"):
        noise.run_video_noise("gamma")
