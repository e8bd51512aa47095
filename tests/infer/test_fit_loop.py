"""The fitting loop on small stand-ins: divergence, validation without a finite score, resuming,
and the random state it checkpoints."""

import math

import numpy as np
import pytest
import torch

import probtwin as pt
from probtwin.data.batching import joint_steps
from probtwin.infer import ElboTerms, FitConfig, rng_state, run_fit, seeded, set_rng_state


class _Quadratic(torch.nn.Module):
    """Minimise (theta - 3)^2 in steps; ``bad_steps`` return a NaN loss; validation = -|theta - 3|."""

    def __init__(self, bad_steps=(), score=None):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(()))
        self.bad_steps, self.score, self.calls, self.seen = set(bad_steps), score, 0, []

    def epoch_batches(self, epoch):
        return range(4)

    def loss_terms(self, batch):
        self.calls += 1
        self.seen.append(float(self.theta.detach()))
        ll = -((self.theta - 3.0) ** 2) + 0.01 * torch.randn(())
        if self.calls in self.bad_steps:
            ll = ll * float("nan")
        zero = torch.zeros(())
        return ElboTerms(ll, zero, zero)

    def validation_score(self):
        return float("nan") if self.score == "nan" else -abs(float(self.theta) - 3.0)


def test_a_non_finite_loss_rolls_back_at_once_and_decays_the_rate():
    twin = _Quadratic(bad_steps={10})  # epoch 2, its second step
    config = FitConfig(max_epochs=6, lr=0.1, patience=100, progress=False, lr_decay=0.5)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        history = run_fit(twin, config, torch.device("cpu"))
    assert history["lr"][:2] == [0.1, 0.1] and history["lr"][2] == pytest.approx(0.05)
    assert np.isfinite(float(twin.theta)) and history.best_epoch >= 3  # it went on learning
    # the step after the bad one started from the best state (end of epoch 1), not from epoch 2's first step
    best_after_epoch_1 = twin.seen[8]  # theta entering epoch 2 = the state at the end of epoch 1
    assert twin.seen[10] == pytest.approx(best_after_epoch_1)


def test_a_fit_without_any_finite_validation_score_stops_without_crashing():
    twin = _Quadratic(score="nan")
    with pytest.warns(RuntimeWarning, match="no epoch had a finite validation score"):
        history = run_fit(twin, FitConfig(max_epochs=20, patience=3, progress=False), torch.device("cpu"))
    assert len(history) == 3 and "no finite validation score" in history.stopped


def test_resuming_with_another_learning_rate_is_refused(tmp_path):
    ckpt = str(tmp_path / "q.ckpt")
    run_fit(_Quadratic(), FitConfig(max_epochs=2, lr=0.1, progress=False, checkpoint=ckpt), torch.device("cpu"))
    with pytest.raises(pt.DataError, match="lr"):
        run_fit(_Quadratic(), FitConfig(max_epochs=3, lr=0.2, progress=False, checkpoint=ckpt), torch.device("cpu"))
    twin = _Quadratic()
    history = run_fit(twin, FitConfig(max_epochs=3, lr=0.1, progress=False, checkpoint=ckpt), torch.device("cpu"))
    assert len(history) == 3 and twin.calls == 4  # one more epoch, not three


def test_checkpointed_random_state_round_trips_through_any_map_location(tmp_path):
    torch.manual_seed(5)
    state = rng_state("cpu")
    expected = torch.randn(3)
    path = tmp_path / "rng.pt"
    torch.save({"rng": state}, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    set_rng_state(loaded["rng"], "cpu")
    torch.testing.assert_close(torch.randn(3), expected)
    set_rng_state({"cpu": state["cpu"]}, "cpu")  # the older checkpoints' CPU state alone
    torch.testing.assert_close(torch.randn(3), expected)


def test_seeded_restores_the_callers_state():
    torch.manual_seed(1)
    before = torch.randn(2)
    torch.manual_seed(1)
    with seeded(7):
        inside = torch.randn(2)
    torch.testing.assert_close(torch.randn(2), before)  # the caller's stream is untouched
    with seeded(7):
        torch.testing.assert_close(torch.randn(2), inside)


def test_joint_steps_hold_every_session_and_estimate_the_full_sum_without_bias():
    sizes, batch_size = [40, 10, 3], 8
    steps = joint_steps(sizes, batch_size, seed=0, epoch=0)
    assert len(steps) == 5 and all(len(step) == 3 for step in steps)
    assert [len(b) for b in steps[0]] == [8, 2, 1]
    assert np.array_equal(np.sort(np.concatenate([s[0] for s in steps])), np.arange(40))  # the largest: once
    values = [np.random.default_rng(k).normal(size=n) for k, n in enumerate(sizes)]
    total = sum(v.sum() for v in values)
    estimates = [
        sum(v[b].sum() * n / len(b) for v, b, n in zip(values, step, sizes))
        for epoch in range(400)
        for step in joint_steps(sizes, batch_size, seed=1, epoch=epoch)
    ]
    se = np.std(estimates) / math.sqrt(len(estimates))
    assert abs(np.mean(estimates) - total) < 4 * se
    with pytest.raises(pt.DataError, match="n_trials"):
        joint_steps([], 4, 0, 0)


def test_two_sessions_step_together_each_step_the_sum_of_their_bounds():
    a = pt.simulate.v1(n_neurons=6, n_images=90, image_size=(18, 32), seed=1).recording
    b = pt.simulate.v1(n_neurons=5, n_images=30, image_size=(18, 32), seed=2).recording
    b.name = "other"
    twin = pt.ImageTwin(
        [a, b],
        hidden_channels=4,
        layers=1,
        input_kernel=5,
        hidden_kernel=3,
        position_init="uniform",
        posterior="readout",
    )
    twin._batch_size, twin._seed = 16, 0
    steps = list(twin.epoch_batches(0))
    assert all([batch["session"] for batch in step] == [0, 1] for step in steps)
    twin.train(False)
    with seeded(0):
        joint = twin.loss_terms(steps[0])
    with seeded(0):
        parts = [twin.batch_terms(batch) for batch in steps[0]]
    assert float(joint.elbo) == pytest.approx(float(parts[0].elbo + parts[1].elbo), rel=1e-5)
