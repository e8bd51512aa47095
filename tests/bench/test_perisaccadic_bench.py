"""The GLM baselines of the peri-saccadic benchmark against a simulated unit with a known kernel."""

import numpy as np
import torch

from probtwin.bench.perisaccadic import _bits_per_spike, fit_probe_glm, lagged_probes, time_basis


def _probes(trials: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """One probe per frame at a random place of a 5 x 5 grid: (trials, 1, frames, 5, 5)."""
    maps = np.zeros((trials, 1, frames, 5, 5), np.float32)
    where = rng.integers(0, 25, size=(trials, frames))
    t, f = np.meshgrid(np.arange(trials), np.arange(frames), indexing="ij")
    maps[t, 0, f, where // 5, where % 5] = 1.0
    return maps


def test_lagged_probes_filter_each_place_causally():
    rng = np.random.default_rng(0)
    s = _probes(2, 12, rng)
    x = lagged_probes(s, lags=4, n_basis=1).numpy()  # one bump centred at lag 0
    phi = np.exp(-(np.arange(4.0) ** 2) / (2 * 3.0**2))  # one bump: width 0.75 x 4 lags
    flat = s.reshape(2, 12, 25)
    expected = sum(phi[lag] * np.pad(flat, ((0, 0), (lag, 0), (0, 0)))[:, :12] for lag in range(4))
    np.testing.assert_allclose(x[..., 0], expected, atol=1e-5)


def test_time_basis_sums_to_one():
    phi = time_basis(50, 10.0).numpy()
    np.testing.assert_allclose(phi.sum(1), 1.0, atol=1e-6)
    assert phi.shape == (50, 6) and phi[0].argmax() == 0 and phi[-1].argmax() == 5


def test_the_time_varying_glm_recovers_a_receptive_field_that_moves_at_onset():
    rng = np.random.default_rng(1)
    trials, frames = 300, 40
    s = _probes(trials, frames, rng)
    x = lagged_probes(s, lags=3, n_basis=2)
    # truth: before frame 20 the unit sees place 6 at lag-bump 0, after it place 18
    before, after = torch.zeros(25, 2), torch.zeros(25, 2)
    before[6, 0], after[18, 0] = 2.0, 2.0
    kernel = torch.where(torch.arange(frames)[:, None, None] < 20, before, after)  # (F, 25, 2)
    log_rate = torch.einsum("tfxb,fxb->tf", x, kernel) - 2.0
    y = torch.poisson(log_rate.exp(), generator=torch.Generator().manual_seed(1))[..., None]
    train, test = slice(0, 240), slice(240, None)  # scored on trials the fits did not see
    phi = time_basis(frames, 10.0)
    fit = fit_probe_glm(x[train], y[train], phi, (5, 5), spatial=0.1, temporal=1.0)
    k = torch.einsum("fj,jxbn->fxbn", phi, fit["kernel"])[..., 0, 0]  # (F, 25) at lag-bump 0
    assert k[:15].mean(0).argmax() == 6 and k[25:].mean(0).argmax() == 18
    static = fit_probe_glm(x[train], y[train], torch.ones(frames, 1), (5, 5), spatial=0.1, temporal=0.0)
    rate = lambda p: torch.einsum("fj,jxbn->fxbn", p[1], p[0]["kernel"])  # noqa: E731
    assert static["kernel"].shape == (1, 25, 2, 1) and rate((fit, phi)).shape == (frames, 25, 2, 1)
    # the time-varying fit explains held-out spikes better than the static one: bits per spike
    mean = y[train].numpy().mean((0, 1))
    bits = {}
    for name, (p, basis) in {"static": (static, torch.ones(frames, 1)), "varying": (fit, phi)}.items():
        lr = torch.einsum("tfxb,fxbn->tfn", x[test], rate((p, basis))) + basis @ p["offset"]
        bits[name] = _bits_per_spike(y[test].numpy(), lr.exp().numpy(), mean)[0]
    truth = _bits_per_spike(y[test].numpy(), log_rate[test].exp()[..., None].numpy(), mean)[0]
    assert bits["static"] < bits["varying"] <= truth + 0.02 and bits["varying"] > 0.8 * truth


def test_bits_per_spike_of_the_mean_rate_is_zero():
    y = np.random.default_rng(2).poisson(0.3, size=(10, 20, 2)).astype(float)
    mean = y.mean((0, 1))
    np.testing.assert_allclose(_bits_per_spike(y, np.broadcast_to(mean, y.shape), mean), 0.0, atol=1e-12)


def test_the_comparison_scores_every_side_per_unit(shared_data):
    from probtwin.bench.perisaccadic import run_perisaccadic_comparison

    out = run_perisaccadic_comparison(
        "181024",
        root=shared_data,
        fit_settings={"max_epochs": 1},
        spatial=(1.0, 10.0),
        temporal=(10.0,),
        num_samples=10,
        window_ms=(-200, 300),
    )
    assert out["units"] == ["181024051", "181024081"]
    for side in ("twin", "static_glm", "time_varying_glm"):
        assert len(out[f"{side}_bits"]) == 2 and np.all(np.isfinite(out[f"{side}_bits"]))
    # the static GLM beats the mean rate of the stronger unit on held-out trials (penalty chosen on validation)
    assert max(out["static_glm_bits"]) > 0 and out["static_glm_penalties"]["spatial"][0] in (1.0, 10.0)
    assert np.shape(out["post_saccadic_shift"]["mean"]) == (2, 2) and np.shape(out["saccade"]["lower"]) == (2,)
