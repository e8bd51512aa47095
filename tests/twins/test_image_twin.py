import numpy as np
import pyro
import pytest
import torch

import probtwin as pt
from probtwin.twins import queries

SMALL = dict(hidden_channels=8, layers=2, input_kernel=9, hidden_kernel=3, posterior="readout")


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.v1(n_neurons=30, n_images=400, repeats=2, image_size=(18, 32), seed=11)


@pytest.fixture(scope="module")
def fitted(sim):
    twin = pt.ImageTwin(sim.recording, **SMALL)
    history = twin.fit(max_epochs=25, batch_size=32, lr=0.01, progress=False, seed=0)
    return twin, history


def test_fit_returns_a_history_with_separate_terms(fitted):
    twin, history = fitted
    assert len(history) >= 1 and history.device == "cpu"
    for key in ("elbo", "log_likelihood", "kl", "factor", "validation", "lr", "seconds"):
        assert len(history[key]) == len(history)
    e = history.epochs[-1]
    assert e["elbo"] == pytest.approx(e["log_likelihood"] + e["factor"] - e["kl"], rel=1e-6)
    assert all(k > 0 for k in history["kl"])
    # the fit ends in its best state: the twin as returned scores the best validation figure
    assert twin.validation_score() == pytest.approx(history.best_score, rel=1e-6)
    assert history.best_score == max(history["validation"])
    assert len(pyro.get_param_store()) == 0  # parameters are module-local


def test_the_fit_learns_the_responses(fitted, sim):
    twin, history = fitted
    assert history.best_score > history["validation"][0]
    scores = twin.evaluate(sim.recording, "test", num_samples=30)
    truth = sim.truth["mean_response"][sim.recording.split("test").trial_index]
    y = np.asarray(sim.recording.split("test").responses)
    ceiling = np.nanmean(pt.metrics.single_trial_correlation(y, truth))
    assert 0.5 * ceiling < scores["single_trial_correlation"] <= ceiling + 0.02
    assert {"correlation_to_average", "feve", "log_likelihood_bits", "coverage_90"} <= set(scores)
    assert 0.75 < scores["coverage_90"] < 0.97
    true_bits = sim.truth["log_likelihood"][sim.recording.split("test").trial_index].mean() / 30 / np.log(2)
    assert scores["log_likelihood_bits"] < true_bits + 0.05  # no model beats the truth by much


def test_predict_is_vectorised_seeded_and_chunked(fitted, sim, monkeypatch):
    twin, _ = fitted
    test = sim.recording.split("test")
    a = twin.predict(test, num_samples=7, seed=3)
    b = twin.predict(test, num_samples=7, seed=3)
    c = twin.predict(test, num_samples=7, seed=4)
    assert a.samples.shape == (7, test.n_trials, 30) and a.mean.shape == (test.n_trials, 30)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    lo, hi = a.interval(0.9)
    assert np.all(lo <= hi) and a.quantile(0.5).shape == (test.n_trials, 30)
    monkeypatch.setattr(queries, "_MAX_ELEMENTS", 1)  # one trial a chunk
    np.testing.assert_allclose(twin.predict(test, num_samples=7, seed=3).samples, a.samples, rtol=1e-5, atol=1e-6)
    # stimuli alone: the average behaviour and gaze
    images = np.asarray(test.stimuli)[:5]
    assert twin.predict(images, num_samples=2).samples.shape == (2, 5, 30)


def test_sample_draws_counts_around_the_prediction(fitted, sim):
    twin, _ = fitted
    test = sim.recording.split("test")
    draws = twin.sample(test, num_samples=200, seed=1)
    assert draws.shape == (200, test.n_trials, 30)
    assert np.all(draws >= 0) and np.all(draws == np.round(draws))
    mean = twin.predict(test, num_samples=200, seed=1).mean
    assert np.corrcoef(draws.mean(0).ravel(), mean.ravel())[0, 1] > 0.95


def test_save_and_load_give_the_same_predictions_bit_for_bit(fitted, sim, tmp_path):
    twin, _ = fitted
    path = twin.save(tmp_path / "twin.pt")
    raw = torch.load(path, weights_only=True)  # nothing but tensors and plain values
    assert raw["format"] == "probtwin-twin"
    loaded = pt.load(path)
    test = sim.recording.split("test")
    np.testing.assert_array_equal(
        loaded.predict(test, num_samples=5, seed=9).samples, twin.predict(test, num_samples=5, seed=9).samples
    )
    assert loaded.history is not None and len(loaded.history) == len(twin.history)
    bad = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, bad)
    for p in (bad, tmp_path / "missing.pt"):
        with pytest.raises(pt.DataError, match="saved by twin.save"):
            pt.load(p)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(pt.DataError):
        pt.load(tmp_path / "text.pt")


def test_readout_positions_recover_the_receptive_fields(fitted, sim):
    twin, _ = fitted
    pos = twin.readout_positions()
    err = np.linalg.norm(pos["mean"] - sim.truth["rf_position"], axis=1)
    assert np.median(err) < 3.0  # pixels, on an 18 x 32 image, after a short fit of a small core
    assert pos["mean"].shape == (30, 2)
    assert np.all(pos["lower"] <= pos["mean"]) and np.all(pos["mean"] <= pos["upper"])
    grid = twin.readout_positions(pixels=False)["mean"]
    np.testing.assert_allclose(pos["mean"][:, 0], ((grid[:, 0] + 1) * 32 - 1) / 2, rtol=1e-5)


def test_bad_input_is_a_data_error(fitted, sim):
    twin, _ = fitted
    with pytest.raises(pt.DataError, match="stimuli"):
        twin.predict(np.zeros((4, 3, 18, 32)))  # three channels for a one-channel twin
    with pytest.raises(pt.DataError, match="stimuli"):
        twin.predict(np.zeros((4, 1, 20, 32)))
    with pytest.raises(pt.DataError, match="stimuli"):
        twin.predict(np.zeros((4, 18, 32)))
    rng = np.random.default_rng(0)
    negative = pt.Recording(rng.normal(size=(40, 1, 8, 8)), rng.normal(size=(40, 3)))
    with pytest.raises(pt.DataError, match="non-negative"):
        pt.ImageTwin(negative)
    pt.ImageTwin(negative, likelihood="normal", **SMALL)  # dF/F is fine with a Gaussian likelihood
    with pytest.raises(pt.DataError, match="noise"):
        pt.ImageTwin(sim.recording, noise="correlated")
    with pytest.raises(pt.DataError, match="shifter"):
        pt.ImageTwin(negative, likelihood="normal", shifter=True)


def test_two_twins_never_share_a_parameter(sim):
    a = pt.ImageTwin(sim.recording, **SMALL)
    b = pt.ImageTwin(sim.recording, **SMALL)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    b.fit(max_epochs=1, progress=False)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert not set(map(id, a.parameters())) & set(map(id, b.parameters()))


def test_checkpoint_resumes_a_fit(sim, tmp_path):
    ckpt = tmp_path / "fit.ckpt"
    torch.manual_seed(0)
    full = pt.ImageTwin(sim.recording, **SMALL)
    init = {k: v.clone() for k, v in full.state_dict().items()}
    full.fit(max_epochs=3, progress=False, patience=100)
    part = pt.ImageTwin(sim.recording, **SMALL)
    part.load_state_dict(init)
    part.fit(max_epochs=2, progress=False, patience=100, checkpoint=ckpt)
    resumed = pt.ImageTwin(sim.recording, **SMALL)
    resumed.load_state_dict(init)
    history = resumed.fit(max_epochs=3, progress=False, patience=100, checkpoint=ckpt)
    assert [e["epoch"] for e in history.epochs] == [0, 1, 2]
    np.testing.assert_allclose(history["elbo"], full.history["elbo"], rtol=1e-4)
    for k, v in resumed.state_dict().items():
        torch.testing.assert_close(v, full.state_dict()[k], rtol=1e-4, atol=1e-5)


class _TinyCore(torch.nn.Module):
    out_channels = 4

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 5, padding=2)  # 1 image channel + 3 behavioural channels

    def forward(self, x):
        return torch.nn.functional.elu(self.conv(x))


def test_another_core_can_be_plugged_in(sim, tmp_path):
    twin = pt.ImageTwin(sim.recording, core=_TinyCore())
    twin.fit(max_epochs=1, progress=False)
    path = twin.save(tmp_path / "custom.pt")
    with pytest.raises(pt.DataError, match="core"):
        pt.load(path)
    again = pt.load(path, core=_TinyCore())
    test = sim.recording.split("test")
    np.testing.assert_array_equal(again.predict(test, num_samples=3).samples, twin.predict(test, num_samples=3).samples)
    with pytest.raises(pt.DataError, match="out_channels"):
        pt.ImageTwin(sim.recording, core=torch.nn.Identity())


def test_the_same_seed_builds_the_same_twin(sim):
    a = pt.ImageTwin(sim.recording, seed=3, **SMALL).state_dict()
    b = pt.ImageTwin(sim.recording, seed=3, **SMALL).state_dict()
    c = pt.ImageTwin(sim.recording, seed=4, **SMALL).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_time_limit_stops_the_fit(sim):
    twin = pt.ImageTwin(sim.recording, **SMALL)
    history = twin.fit(max_epochs=5, progress=False, time_limit=1e-9)
    assert len(history) == 0 and "time limit" in history.stopped


def test_several_sessions_share_one_core(tmp_path):
    a = pt.simulate.v1(n_neurons=10, n_images=120, image_size=(18, 32), seed=1).recording
    b = pt.simulate.v1(n_neurons=14, n_images=100, image_size=(18, 32), seed=2).recording
    b.name = "other_mouse"
    twin = pt.ImageTwin([a, b], **SMALL)
    twin.fit(max_epochs=2, progress=False)
    assert twin.predict(a, num_samples=2).samples.shape == (2, 120, 10)
    assert twin.predict(b.split("test"), num_samples=2).samples.shape == (2, b.split("test").n_trials, 14)
    with pytest.raises(pt.DataError, match="session"):
        twin.predict(np.zeros((2, 1, 18, 32)))
    assert twin.predict(np.zeros((2, 1, 18, 32)), num_samples=2, session="other_mouse").samples.shape == (2, 2, 14)
    loaded = pt.load(twin.save(tmp_path / "two.pt"))
    np.testing.assert_array_equal(
        loaded.predict(b, num_samples=2, seed=5).samples, twin.predict(b, num_samples=2, seed=5).samples
    )


def test_intervene_sets_a_site_in_every_draw(fitted, sim):
    twin, _ = fitted
    images = np.asarray(sim.recording.split("test").stimuli)[:4]
    n, channels = twin.readouts[0].weight_loc.shape
    do = {"weights_0": np.zeros((n, channels)), "bias_0": np.full(n, 0.5)}
    intact, forced = twin.intervene(images, do, num_samples=6, seed=1)
    np.testing.assert_allclose(intact.samples, twin.predict(images, num_samples=6, seed=1).samples, rtol=1e-5)
    assert forced.samples.shape == (6, 4, n)
    np.testing.assert_allclose(forced.samples, np.broadcast_to(forced.samples[:1, :1], forced.samples.shape), rtol=1e-5)
    assert not np.allclose(intact.samples, forced.samples)


def test_files_of_earlier_format_versions_still_load(fitted, sim, tmp_path):
    from probtwin.twins.persistence import _RENAMED_IN_2

    twin, _ = fitted
    payload = torch.load(twin.save(tmp_path / "v2.pt"), weights_only=True)
    back = {new: old for old, new in _RENAMED_IN_2.items()}
    v1 = {}
    for key, value in payload["state"].items():  # the names version 1 wrote
        match = next((new for new in back if key == new or key.endswith("." + new)), None)
        v1[key if match is None else key[: len(key) - len(match)] + back[match]] = value
    assert v1.keys() != payload["state"].keys()
    torch.save({**payload, "version": 1, "state": v1}, tmp_path / "v1.pt")
    test = sim.recording.split("test")
    np.testing.assert_array_equal(
        pt.load(tmp_path / "v1.pt").predict(test, num_samples=3, seed=2).samples,
        twin.predict(test, num_samples=3, seed=2).samples,
    )
    v2 = {k: v for k, v in payload["state"].items() if not k.endswith(".spread")}  # before recalibration
    assert len(v2) < len(payload["state"])
    torch.save({**payload, "version": 2, "state": v2}, tmp_path / "v2_old.pt")
    old = pt.load(tmp_path / "v2_old.pt")
    assert torch.all(old.readouts[0].spread == 1.0)
    np.testing.assert_array_equal(
        old.predict(test, num_samples=3, seed=2).samples, twin.predict(test, num_samples=3, seed=2).samples
    )
    torch.save({**payload, "state": {k: v for k, v in payload["state"].items() if "core" not in k}}, tmp_path / "x.pt")
    with pytest.raises(pt.DataError, match="state this version can read"):
        pt.load(tmp_path / "x.pt")
