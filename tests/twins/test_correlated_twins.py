"""Twins with a latent state, fitted on simulations whose true latent state is known."""

import numpy as np
import pytest
import torch

import probtwin as pt
from probtwin.bench.noise import canonical_correlations
from probtwin.twins.noise import FlowNoise

SMALL = dict(hidden_channels=8, layers=2, input_kernel=9, hidden_kernel=3, posterior="readout")
FIT = dict(max_epochs=15, batch_size=32, lr=0.01, progress=False, seed=0)


def _true_correlations(truth: dict) -> np.ndarray:
    c, psi = truth["latent_loadings"], truth["private_variance"]
    cov = c @ c.T + np.diag(psi)
    sd = np.sqrt(np.diag(cov))
    return cov / sd[:, None] / sd[None, :]


def _upper(m: np.ndarray) -> np.ndarray:
    return m[np.triu_indices(len(m), 1)]


@pytest.fixture(scope="module")
def flow_sim():
    return pt.simulate.v1(
        n_neurons=40,
        n_images=120,
        repeats=10,
        image_size=(18, 32),
        likelihood="lognormal",
        correlated_noise_rank=2,
        seed=3,
    )


@pytest.fixture(scope="module")
def flow_twins(flow_sim):
    twins = {}
    for rank in (2, 0):
        twin = pt.ImageTwin(flow_sim.recording, noise="flow", latent_rank=rank, **SMALL)
        twin.fit(**FIT)
        twins[rank] = twin
    return twins


@pytest.fixture(scope="module")
def flow_scores(flow_sim, flow_twins):
    return {rank: twin.evaluate(flow_sim.recording, "test", num_samples=20) for rank, twin in flow_twins.items()}


def test_flow_twin_beats_independent_noise_in_held_out_likelihood(flow_scores, flow_sim):
    flow, independent = flow_scores[2], flow_scores[0]
    assert flow["log_likelihood_kind"] == "analytic" and flow["log_likelihood_mc_error"] == 0
    assert flow["log_likelihood_bits"] > independent["log_likelihood_bits"] + 0.01
    test = flow_sim.recording.split("test")
    true_bits = flow_sim.truth["log_likelihood"][test.trial_index].sum() / (test.n_trials * 40) / np.log(2)
    assert flow["log_likelihood_bits"] < true_bits  # a short fit does not beat the true model
    assert 0.85 <= flow["coverage_90"] <= 0.95


def test_conditioning_on_the_other_neurons_improves_single_trial_predictions(flow_scores):
    flow = flow_scores[2]
    assert flow["conditional_correlation"] > flow["single_trial_correlation"] + 0.03
    assert "conditional_correlation" not in flow_scores[0]


def test_noise_correlations_recover_the_truth(flow_sim, flow_twins):
    twin = flow_twins[2]
    model = twin.noise_correlations()
    assert model.shape == (40, 40)
    np.testing.assert_allclose(model, model.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(model), 1.0)
    assert np.corrcoef(_upper(model), _upper(_true_correlations(flow_sim.truth)))[0, 1] > 0.8
    # sampled responses carry them: in the response space too
    image = np.asarray(flow_sim.recording.stimuli[0])
    sampled = twin.noise_correlations(image, space="response", num_samples=4000)
    assert np.corrcoef(_upper(sampled), _upper(model))[0, 1] > 0.9
    # a rank-0 flow has none
    np.testing.assert_allclose(flow_twins[0].noise_correlations(), np.eye(40), atol=1e-12)


def test_latent_state_recovers_the_true_latent_state(flow_sim, flow_twins):
    state = flow_twins[2].latent_state(flow_sim.recording, "test")
    test = flow_sim.recording.split("test")
    np.testing.assert_array_equal(state["trial_index"], test.trial_index)
    assert state["mean"].shape == (test.n_trials, 2)
    assert np.all(state["sd"] > 0) and np.all(state["lower"] < state["mean"]) and np.all(state["mean"] < state["upper"])
    cc = canonical_correlations(state["mean"], flow_sim.truth["latent_state"][test.trial_index])
    assert cc[0] > 0.85


def test_sampled_populations_are_correlated_like_the_truth(flow_sim, flow_twins):
    twin = flow_twins[2]
    image = np.repeat(np.asarray(flow_sim.recording.stimuli[:1]), 3000, axis=0)
    draws = twin.sample(image, num_samples=1, seed=4)[0]
    assert draws.shape == (3000, 40)
    empirical = np.corrcoef(np.log1p(np.maximum(draws, -0.99)), rowvar=False)
    assert np.corrcoef(_upper(empirical), _upper(_true_correlations(flow_sim.truth)))[0, 1] > 0.75
    np.testing.assert_array_equal(draws, twin.sample(image, num_samples=1, seed=4)[0])


def test_predict_given_some_neurons_predicts_the_others(flow_sim, flow_twins):
    twin = flow_twins[2]
    test = flow_sim.recording.split("test")
    y = np.asarray(test.responses)
    given = np.arange(0, 40, 2)
    cond = twin.predict(test, num_samples=10, given=(given, y[:, given]))
    free = twin.predict(test, num_samples=10)
    others = np.arange(1, 40, 2)
    assert cond.samples.shape == (10, test.n_trials, 20)
    np.testing.assert_array_equal(cond.neuron_ids, np.asarray(flow_sim.recording.neuron_ids)[others])
    r_cond = np.nanmean(pt.metrics.single_trial_correlation(y[:, others], cond.mean))
    r_free = np.nanmean(pt.metrics.single_trial_correlation(y[:, others], free.mean[:, others]))
    assert r_cond > r_free + 0.03
    # an independent-noise twin learns nothing from other neurons
    independent = flow_twins[0]
    same = independent.predict(test, num_samples=10, given=(given, y[:, given]))
    np.testing.assert_allclose(same.samples, independent.predict(test, num_samples=10).samples[..., others], rtol=1e-5)


def test_given_is_checked(flow_sim, flow_twins):
    twin = flow_twins[2]
    test = flow_sim.recording.split("test")
    y = np.asarray(test.responses)
    cases = [
        ((np.array([0, 0]), y[:, :2]), "given[0]"),
        ((np.array([40]), y[:, :1]), "given[0]"),
        ((np.arange(40), y), "given[0]"),
        ((np.array([0, 1]), y[:, :3]), "given[1]"),
        ((np.array([0]), np.full((test.n_trials, 1), np.nan)), "given[1]"),
        (np.array([0]), "given"),
    ]
    for given, field in cases:
        with pytest.raises(pt.DataError) as info:
            twin.predict(test, num_samples=2, given=given)
        assert info.value.field == field


def test_flow_twin_saves_and_loads(flow_sim, flow_twins, tmp_path):
    twin = flow_twins[2]
    path = twin.save(tmp_path / "flow.pt")
    back = pt.load(path)
    test = flow_sim.recording.split("test")
    np.testing.assert_allclose(back.predict(test, num_samples=5).samples, twin.predict(test, num_samples=5).samples)
    np.testing.assert_allclose(back.noise_correlations(), twin.noise_correlations())
    np.testing.assert_array_equal(back.sample(test, 2, seed=1), twin.sample(test, 2, seed=1))


def test_latent_query_arguments_are_checked(flow_sim, flow_twins):
    twin = flow_twins[2]
    with pytest.raises(pt.DataError, match="level"):
        twin.latent_state(flow_sim.recording, level=1.5)
    with pytest.raises(pt.DataError, match="num_samples"):
        twin.noise_correlations(np.asarray(flow_sim.recording.stimuli[0]), space="response", num_samples=1)
    with pytest.raises(pt.DataError, match="one stimulus"):
        twin.noise_correlations(np.asarray(flow_sim.recording.stimuli[:2]), space="response")


def test_latent_queries_need_a_latent_state(flow_sim):
    twin = pt.ImageTwin(flow_sim.recording, likelihood="normal", **SMALL)
    with pytest.raises(pt.DataError) as info:
        twin.latent_state(flow_sim.recording)
    assert info.value.field == "noise"
    with pytest.raises(pt.DataError, match="space"):
        twin.noise_correlations(space="gaussian")
    with pytest.raises(pt.DataError, match="x"):
        twin.noise_correlations()  # the response space needs a stimulus


def test_zero_inflated_flow_models_exact_zeros():
    sim = pt.simulate.v1(n_neurons=20, n_images=300, image_size=(18, 32), likelihood="zig", seed=2)
    rec = sim.recording
    twin = pt.ImageTwin(rec, noise="zero_inflated_flow", latent_rank=1, **SMALL)
    twin.fit(max_epochs=4, batch_size=32, lr=0.01, progress=False)
    scores = twin.evaluate(rec, "test", num_samples=10)
    assert np.isfinite(scores["log_likelihood_bits"])
    draws = twin.sample(rec.split("test"), num_samples=20)
    zeros = np.mean(np.asarray(rec.split("train").responses) == 0, axis=0)
    np.testing.assert_allclose(np.mean(draws == 0, axis=(0, 1)), zeros, atol=0.08)
    assert np.all(draws >= 0)
    with pytest.raises(pt.DataError, match="non-negative"):
        pt.ImageTwin(
            pt.simulate.v1(n_neurons=5, n_images=50, likelihood="normal", seed=0).recording,
            noise="zero_inflated_flow",
            **SMALL,
        )


def test_the_dequantized_density_bounds_the_true_count_likelihood():
    """The flow alone on Poisson counts whose means are known (a learned affine map of log(1 +
    mean) as its location): its dequantized bound on held-out counts is below the true Poisson
    log-likelihood, and within the dequantization gap of it."""
    from probtwin.data.registry import response_stats

    rng = np.random.default_rng(0)
    mean = rng.gamma(3.0, 1.0, size=(4000, 10))
    y = torch.as_tensor(rng.poisson(mean), dtype=torch.float64)
    true_bits = float(torch.distributions.Poisson(torch.as_tensor(mean[3000:])).log_prob(y[3000:]).mean() / np.log(2))
    feature = torch.as_tensor(np.log1p(mean))
    noise = FlowNoise(10, 1, dequantize=True)
    noise.initialize(response_stats(pt.Recording(np.zeros((3000, 1, 2, 2)), y[:3000].numpy()).responses), "y")
    noise.double()
    scale, offset = torch.ones(10, dtype=torch.float64), torch.zeros(10, dtype=torch.float64)
    with torch.no_grad():
        offset += noise.location_of(torch.as_tensor(mean[:3000].mean(0))) - feature[:3000].mean(0)
    scale.requires_grad_(True), offset.requires_grad_(True)
    optimizer = torch.optim.Adam([*noise.parameters(), scale, offset], lr=0.02)
    torch.manual_seed(0)
    for _ in range(700):
        loss = -noise.log_prob(feature[:3000] * scale + offset, y[:3000]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        bound_bits = float(noise.log_prob(feature[3000:] * scale + offset, y[3000:]).mean() / 10 / np.log(2))
    assert true_bits - 0.25 < bound_bits < true_bits


def test_dequantized_flow_on_counts_is_a_lower_bound_with_integer_samples():
    sim = pt.simulate.v1(n_neurons=15, n_images=300, image_size=(18, 32), seed=5, mean_rate=3.0)
    rec = sim.recording
    twin = pt.ImageTwin(rec, noise="flow", latent_rank=1, dequantize=True, **SMALL)
    twin.fit(max_epochs=4, batch_size=32, lr=0.01, progress=False)
    scores = twin.evaluate(rec, "test", num_samples=10)
    assert scores["log_likelihood_kind"] == "dequantized lower bound"
    draws = twin.sample(rec.split("test"), num_samples=5)
    np.testing.assert_array_equal(draws, np.floor(draws))
    assert draws.min() >= 0
    with pytest.raises(pt.DataError, match="integer"):
        pt.ImageTwin(
            pt.simulate.v1(n_neurons=5, n_images=50, likelihood="lognormal", seed=0).recording,
            noise="flow",
            dequantize=True,
            **SMALL,
        )


@pytest.fixture(scope="module")
def count_sim():
    return pt.simulate.v1(
        n_neurons=40,
        n_images=100,
        repeats=8,
        image_size=(18, 32),
        likelihood="poisson",
        correlated_noise_rank=2,
        noise_scale=2.0,
        mean_rate=3.0,
        seed=6,
    )


@pytest.fixture(scope="module")
def count_twins(count_sim):
    twins = {}
    for noise, rank in (("latent", 2), ("independent", 0)):
        twin = pt.ImageTwin(count_sim.recording, noise=noise, latent_rank=rank, **SMALL)
        twin.fit(**FIT)
        twins[noise] = twin
    return twins


def test_latent_count_twin_beats_independent_poisson(count_sim, count_twins):
    rec = count_sim.recording
    latent = count_twins["latent"].evaluate(rec, "test", num_samples=50)
    independent = count_twins["independent"].evaluate(rec, "test", num_samples=50)
    assert latent["log_likelihood_kind"] == "importance-weighted bound"
    assert 0 < latent["log_likelihood_mc_error"] < 0.01 and latent["log_likelihood_samples"] == 50
    assert latent["log_likelihood_bits"] > independent["log_likelihood_bits"] + 0.02
    assert latent["conditional_correlation"] > latent["single_trial_correlation"] + 0.02


def test_latent_count_twin_recovers_the_latent_state(count_sim, count_twins):
    rec = count_sim.recording
    state = count_twins["latent"].latent_state(rec, "test")
    test = rec.split("test")
    cc = canonical_correlations(state["mean"], count_sim.truth["latent_state"][test.trial_index])
    assert cc[0] > 0.8
    assert np.all(state["sd"] > 0)
