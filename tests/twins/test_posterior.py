"""The whole-twin posterior: members (ensemble, SWAG) that every query carries, checked against
the members run one at a time."""

import copy
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

import probtwin as pt
from probtwin.twins.evaluation import mixture_log_predictive
from probtwin.twins.posterior import normal_mixture_quantile

SMALL = dict(hidden_channels=6, layers=2, input_kernel=5, hidden_kernel=3)


@pytest.fixture(scope="module")
def sim():
    return pt.simulate.v1(n_neurons=12, n_images=400, image_size=(20, 28), seed=4)


@pytest.fixture(scope="module")
def ensemble(sim, tmp_path_factory):
    twin = pt.ImageTwin(sim.recording, posterior="ensemble", members=2, **SMALL)
    path = tmp_path_factory.mktemp("ensemble") / "fit.ckpt"
    twin.fit(max_epochs=3, progress=False, checkpoint=path)
    return twin, path


@pytest.fixture(scope="module")
def swag(sim):
    twin = pt.ImageTwin(sim.recording, posterior="swag", members=3, swag_epochs=4, swag_rank=3, **SMALL)
    twin.fit(max_epochs=3, progress=False)
    return twin


def as_mixture(twin):
    """A copy of the twin whose members' draws stay as drawn (no Student-t combination)."""
    mixed = copy.deepcopy(twin)
    mixed.combination = "mixture"
    return mixed


def alone(twin, member):
    """A copy of the twin with one member's parameters and no others."""
    single = copy.deepcopy(twin)
    single.members = []
    single.load_state_dict({**single.state_dict(), **member})
    return single


def test_ensemble_members_are_independent_fits(ensemble):
    twin, path = ensemble
    assert len(twin.members) == 2 and len(twin.member_histories) == 2
    first, second = twin.members
    assert not torch.allclose(first["core.blocks.0.0.weight"], second["core.blocks.0.0.weight"])  # other seeds
    for name, p in twin.named_parameters():  # the twin itself is the first member
        assert torch.equal(p.detach(), first[name])
    assert path.is_file() and path.with_name("fit.member1.ckpt").is_file()
    # each member keeps its own batch-norm statistics (run with another's, its features are misread)
    norms = [name for name in first if name.endswith("running_var")]
    assert norms and all(not torch.equal(first[n], second[n]) for n in norms)
    for name, b in twin.named_buffers():
        if name in first:
            assert torch.equal(b, first[name])


def test_every_query_runs_each_member_on_its_share_of_the_draws(sim, ensemble):
    twin = as_mixture(ensemble[0])
    x = np.asarray(sim.recording.split("test").stimuli)[:9]
    mixed = twin.predict(x, num_samples=5, seed=3).samples
    singles = [alone(twin, m) for m in twin.members]
    # stratified: the first member's three draws come first, from the same random stream
    np.testing.assert_allclose(mixed[:3], singles[0].predict(x, num_samples=3, seed=3).samples, rtol=1e-5)
    means = [s._predict_mean(x) for s in singles]
    np.testing.assert_allclose(twin._predict_mean(x), np.mean(means, 0), rtol=1e-5)
    assert np.abs(means[0] - means[1]).max() > 1e-3  # the members disagree: the draws carry it
    # the members' positions form the interval: each member's mean lies inside the mixture's
    positions = twin.readout_positions(level=0.99)
    for s in singles:
        m = s.readout_positions()["mean"]
        assert np.all((positions["lower"] <= m) & (m <= positions["upper"]))


def test_an_ensemble_resumes_from_its_members_checkpoints(sim, ensemble):
    twin, path = ensemble
    again = pt.ImageTwin(sim.recording, posterior="ensemble", members=2, **SMALL)
    again.fit(max_epochs=3, progress=False, checkpoint=path)  # both members' fits are finished: restored
    for a, b in zip(twin.members, again.members, strict=True):
        for name in a:
            torch.testing.assert_close(a[name], b[name])


def test_saved_members_load_with_the_twin(sim, ensemble, tmp_path):
    twin, _ = ensemble
    loaded = pt.load(twin.save(tmp_path / "twin.pt"))
    x = np.asarray(sim.recording.stimuli[:4])
    assert len(loaded.members) == 2
    np.testing.assert_allclose(loaded.predict(x, 6).samples, twin.predict(x, 6).samples, rtol=1e-6)


def test_an_ensemble_combines_its_members_as_student_t_around_their_mean(sim, ensemble):
    twin, _ = ensemble
    assert twin._combination() == "student" and twin.query().combination == "student"
    x = np.asarray(sim.recording.split("test").stimuli)[:9]
    combined = twin.predict(x, num_samples=6, seed=3).samples
    mixed = as_mixture(twin).predict(x, num_samples=6, seed=3).samples  # the same members' draws, as drawn
    # antithetic pairs: the draws' mean is the members' mean exactly; between them, a t spread
    np.testing.assert_allclose(combined.mean(0), (mixed[:3].mean(0) + mixed[3:].mean(0)) / 2, rtol=1e-4, atol=1e-5)
    assert not np.allclose(combined, mixed)
    # positions: the t interval holds the mixture's (wider: the truth may lie beyond the members)
    wide, narrow = twin.readout_positions(level=0.9), as_mixture(twin).readout_positions(level=0.9)
    np.testing.assert_allclose(wide["mean"], narrow["mean"], rtol=1e-6)
    assert np.all(wide["lower"] <= narrow["lower"] + 1e-6) and np.all(wide["upper"] >= narrow["upper"] - 1e-6)
    assert np.mean(wide["upper"] - wide["lower"]) > 1.2 * np.mean(narrow["upper"] - narrow["lower"])
    with pytest.raises(ValueError, match="at least 2 draws"):
        twin.predict(x, num_samples=1)


def test_a_statistic_of_the_curves_combines_over_the_members_not_the_curves(sim, ensemble):
    twin, _ = ensemble
    grid = pt.experiments.gratings(np.linspace(0, np.pi, 4, endpoint=False), [0.1], phases=2, twin=twin)
    a, b = np.percentile(sim.recording.behavior, [10, 90], axis=0)
    effect = pt.experiments.compare_states(twin, grid, a[None], b[None], "log_gain", num_samples=6).values
    raw = pt.experiments.compare_states(as_mixture(twin), grid, a[None], b[None], "log_gain", num_samples=6).values
    assert twin.config["combination"] == "student"  # restored after the block
    # each draw's effect is one member's (the mixture's, log ratios of positive means), then combined:
    # grand + c_d (Q_1 - Q_2) / 2 + (x_d - Q_m), one weight c_d a draw, in antithetic pairs
    q = np.stack([raw[:3].mean(0), raw[3:].mean(0)])
    grand = q.mean(0)
    np.testing.assert_allclose(effect.mean(0), grand, rtol=1e-5, atol=1e-6)
    rest = effect - grand - (raw - np.repeat(q, 3, axis=0))
    half = (q[0] - q[1]) / 2
    c = rest @ half / (half @ half)
    np.testing.assert_allclose(rest, c[:, None] * half[None], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c[0::2], -c[1::2], rtol=1e-6)
    assert np.abs(c).max() > 0.1
    with twin.statistic_draws(6, seed=0) as combine:  # the yielded function keeps the input's type
        assert twin.query().combination == "mixture"
        assert combine(raw).shape == raw.shape and isinstance(combine(raw), np.ndarray)
    assert twin.query().combination == "student"
    with as_mixture(twin).statistic_draws(6) as combine:
        assert combine(raw) is raw
    with pytest.raises(pt.DataError, match="num_samples"), twin.statistic_draws(1):
        pass


def test_the_combination_defaults_to_student_for_independent_fits_and_mixture_for_swag(sim, swag):
    assert pt.ImageTwin(sim.recording, posterior="bootstrap", **SMALL).config["combination"] == "student"
    assert pt.ImageTwin(sim.recording, posterior="ensemble", members=1, **SMALL).config["combination"] == "mixture"
    assert swag.config["combination"] == "mixture" and swag.query().combination == "mixture"
    chosen = pt.ImageTwin(sim.recording, posterior="ensemble", combination="mixture", **SMALL)
    assert chosen.config["combination"] == "mixture"
    with pytest.raises(pt.DataError, match="combination"):
        pt.ImageTwin(sim.recording, posterior="ensemble", combination="t", **SMALL)
    with pytest.raises(pt.DataError, match="combination"):
        pt.ImageTwin(sim.recording, posterior="readout", combination="student", **SMALL)
    chosen.combination = "student"  # the same twin, queried the other way
    assert chosen.config["combination"] == "student"
    with pytest.raises(pt.DataError, match="combination"):
        swag.combination = "normal"


def test_swag_draws_the_point_estimates_around_their_running_mean(sim, swag):
    assert len(swag.members) == 3 and swag.member_histories == []
    variational = swag._variational_parameters()
    assert "readouts.0.weight_loc" in variational and "core.blocks.0.0.weight" not in variational
    live = dict(swag.named_parameters())
    for name, p in live.items():
        values = torch.stack([m[name] for m in swag.members])
        if name in variational:  # the readout posterior at its running mean in every member
            assert torch.equal(values, p.detach().expand_as(values))
        elif name.startswith("core.") and name.endswith("weight"):
            assert (values - p.detach()).abs().max() > 0  # drawn around the running mean
    spread = swag.predict(np.asarray(sim.recording.stimuli[:5]), 30).samples.std(0).mean()
    assert spread > 0


def test_bootstrap_members_fit_resamples_of_the_training_trials(sim, monkeypatch):
    import probtwin.twins.posterior as posterior

    seen = []

    def recording_fit(member, config, device):
        (train,) = member._train_tiers()
        again = member._train_tiers()[0]
        seen.append((member._resample_seed, train.stimulus_ids.copy(), again.stimulus_ids))
        return fit(member, config, device)

    fit = posterior.run_fit
    monkeypatch.setattr(posterior, "run_fit", recording_fit)
    twin = pt.ImageTwin(sim.recording, posterior="bootstrap", members=2, **SMALL)
    twin.fit(max_epochs=1, progress=False, seed=5)
    n = sim.recording.split("train").n_trials
    assert [seed for seed, _, _ in seen] == [5, 6] and len(twin.members) == 2
    for _, index, again in seen:
        assert len(index) == n and np.array_equal(index, again)  # the same seed, the same resample
        assert np.isin(index, sim.recording.split("train").stimulus_ids).all()  # training trials only
        unique = len(np.unique(index)) / n  # with replacement: 1 - 1/e of the trials, about 0.632
        assert abs(unique - (1 - np.exp(-1))) < 4 * np.sqrt(np.exp(-1) * (1 - np.exp(-1)) / n)
    assert not np.array_equal(seen[0][1], seen[1][1])  # each member its own resample
    plain = pt.ImageTwin(sim.recording, **SMALL)
    tier = sim.recording.split("train").stimulus_ids
    assert np.array_equal(plain._train_tiers()[0].stimulus_ids, tier)  # a plain fit: the tier itself
    x = np.asarray(sim.recording.split("test").stimuli)[:4]
    assert twin.predict(x, num_samples=4, seed=0).samples.shape[:2] == (4, 4)


def test_the_default_posterior_is_an_ensemble_of_three_fits(sim, tmp_path):
    """ImageTwin(rec) is the measured choice: three fits combined as Student-t, which
    compare_states takes without its readout-only warning. VideoTwin and GazeTwin keep the
    readout posterior; a twin saved before the setting existed loads as it was fitted."""
    twin = pt.ImageTwin(sim.recording, state_readout=True, **SMALL)
    assert (twin.config["posterior"], twin.config["members"], twin.config["combination"]) == ("ensemble", 3, "student")
    twin.fit(max_epochs=1, progress=False)
    assert len(twin.members) == 3 and twin._combination() == "student"
    stimuli = pt.experiments.gratings(np.linspace(0, np.pi, 4, endpoint=False), [0.1], phases=2, twin=twin)
    behavior = np.asarray(sim.recording.behavior)
    a, b = np.percentile(behavior, 10, axis=0)[None], np.percentile(behavior, 90, axis=0)[None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on the defaults
        effect = pt.experiments.compare_states(twin, stimuli, a, b, "log_gain", num_samples=6)
    assert effect.shape == (6, sim.recording.n_neurons)
    assert pt.VideoTwin.default_posterior == pt.GazeTwin.default_posterior == "readout"
    plain = pt.ImageTwin(sim.recording, posterior="readout", **SMALL)
    path = plain.save(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    for key in ("posterior", "members", "combination"):  # as saved before the setting existed
        del payload["config"][key]
    torch.save(payload, path)
    old = pt.load(path)
    assert (old.config["posterior"], old.config["members"], old.members) == ("readout", 1, [])


def test_an_ensemble_whose_members_stop_at_the_time_limit_says_so(sim):
    """A time limit is shared by the members: when every member stops at its share before its
    early stop, the fit warns (members stopped short are less accurate)."""
    twin = pt.ImageTwin(sim.recording, posterior="ensemble", members=2, **SMALL)
    with pytest.warns(UserWarning, match="stopped at it"):
        twin.fit(max_epochs=3, time_limit=1e-3, progress=False)
    assert all(h.stopped.startswith("time limit") for h in twin.member_histories)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin.fit(max_epochs=1, progress=False)  # no limit: no warning


def test_predictive_draws_of_a_student_ensemble_need_no_draw_per_member(sim, ensemble):
    """Only quantities of the parameters combine as Student-t (every member needs draws);
    posterior predictive responses keep the mixture, so one draw of two members is fine."""
    twin = ensemble[0]
    x = np.asarray(sim.recording.split("test").stimuli)[:3]
    assert twin._combination() == "student"
    draws = twin.sample(x, num_samples=1, seed=0)
    assert draws.shape == (1, 3, sim.recording.n_neurons) and np.all(draws >= 0)
    with pytest.raises(ValueError, match="at least 2 draws"):
        twin.predict(x, num_samples=1)


def test_bad_posteriors_are_refused(sim):
    with pytest.raises(pt.DataError, match="posterior"):
        pt.ImageTwin(sim.recording, posterior="laplace", **SMALL)
    with pytest.raises(pt.DataError, match="members"):
        pt.ImageTwin(sim.recording, posterior="ensemble", members=0, **SMALL)
    with pytest.raises(pt.DataError, match="members"):
        pt.ImageTwin(sim.recording, posterior="readout", members=3, **SMALL)
    assert pt.ImageTwin(sim.recording, posterior="ensemble", **SMALL).config["members"] == 3


def test_normal_mixture_quantiles_solve_the_mixture_cdf():
    loc = torch.tensor([[0.0, -1.0], [3.0, 2.0], [1.0, -4.0]])  # (members, elements)
    scale = torch.tensor([[1.0, 0.5], [0.5, 2.0], [2.0, 1.0]])
    for q in (0.05, 0.5, 0.95):
        x = normal_mixture_quantile(loc, scale, q).numpy()
        cdf = stats.norm.cdf(x[None], loc.numpy(), scale.numpy()).mean(0)
        np.testing.assert_allclose(cdf, q, atol=1e-5)


def test_a_mixture_weighs_its_members_equally_in_the_log_predictive_density():
    # members' densities 0.2 and 0.6 (standard errors of their logs 0.1 and 0): mixture 0.4
    members = torch.tensor([[[np.log(0.2)], [0.1]], [[np.log(0.6)], [0.0]]], dtype=torch.float64)
    lp, se = mixture_log_predictive(members)
    np.testing.assert_allclose(lp.numpy(), [np.log(0.4)])
    np.testing.assert_allclose(se.numpy(), [np.sqrt((0.2 * 0.1) ** 2 / 4) / 0.4])  # delta method
    lp1, se1 = mixture_log_predictive(members[:1])
    np.testing.assert_allclose(lp1.numpy(), [np.log(0.2)])
    np.testing.assert_allclose(se1.numpy(), [0.1])


def test_calibration_of_a_twin_is_its_draws_against_the_truth(sim, ensemble):
    twin, _ = ensemble
    test = sim.recording.split("test")
    truth = sim.respond(np.asarray(test.stimuli), np.asarray(test.behavior), np.asarray(test.gaze))
    cal = pt.calibration.mean_calibration(twin, test, truth, num_samples=20, seed=1)
    direct = pt.calibration.calibration(twin.predict(test, 20, seed=1).samples, truth, seed=1)
    np.testing.assert_allclose(cal.coverage, direct.coverage)
    trials = pt.calibration.single_trial_calibration(twin, sim.recording, "test", num_samples=20, seed=1)
    expected = pt.calibration.calibration(twin.sample(test, 20, seed=1), np.asarray(test.responses), seed=1)
    np.testing.assert_allclose(trials.pit, expected.pit)
    assert abs(trials.at(0.9) - twin.evaluate(sim.recording, num_samples=20, seed=1)["coverage_90"]) < 0.1
    with pytest.raises(pt.DataError, match="truth"):
        pt.calibration.mean_calibration(twin, test, truth[:, :3], num_samples=5)


def test_a_whole_twin_posterior_runs_the_state_comparison_without_the_narrow_interval_warning(sim, ensemble):
    twin = as_mixture(ensemble[0])
    grid = pt.experiments.gratings(np.linspace(0, np.pi, 4, endpoint=False), [0.1], phases=2, twin=twin)
    a, b = np.percentile(sim.recording.behavior, [10, 90], axis=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        effect = pt.experiments.compare_states(twin, grid, a[None], b[None], "log_gain", num_samples=4)
    assert not [w for w in caught if "readout only" in str(w.message)]
    assert [w for w in caught if "behavior_in_core=True" in str(w.message)]  # this twin's core takes behaviour
    assert effect.shape == (4, 12)
    first = alone(twin, twin.members[0])  # the first member's draws come first, from the same stream
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gain = pt.experiments.compare_states(first, grid, a[None], b[None], "log_gain", num_samples=2)
    np.testing.assert_allclose(effect.values[:2], gain.values, rtol=1e-4, atol=1e-6)
    assert np.abs(effect.values[:2].mean(0) - effect.values[2:].mean(0)).max() > 1e-4  # the second member's own
