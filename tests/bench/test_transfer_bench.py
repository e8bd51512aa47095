import numpy as np
import pytest
from scipy import stats

import probtwin as pt
from probtwin.bench.transfer import VARIANTS, WEIGHTS, run_transfer_comparison, summarise


def test_summary_and_the_paired_difference_are_their_direct_computation():
    rng = np.random.default_rng(0)
    rows = [
        {"seed": s, "variant": v, "weight": 1.0, "clean": float(rng.uniform()), "pgd_0.1": float(rng.uniform())}
        for s in range(4)
        for v in ("neural", "pixel", "neural_draws")
    ]
    out = summarise(rows)
    neural = np.array([r["clean"] for r in rows if r["variant"] == "neural"])
    pixel = np.array([r["clean"] for r in rows if r["variant"] == "pixel"])
    assert out["summary"]["neural"]["clean"] == pytest.approx((neural.mean(), neural.std(ddof=1)))
    d = neural - pixel
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    paired = out["neural_minus_pixel"]["clean"]
    assert paired["mean"] == pytest.approx(d.mean())
    assert paired["ci95"] == pytest.approx((d.mean() - half, d.mean() + half))
    assert paired["p"] == pytest.approx(stats.ttest_rel(neural, pixel).pvalue)
    draws = np.array([r["pgd_0.1"] for r in rows if r["variant"] == "neural_draws"])
    neural_pgd = np.array([r["pgd_0.1"] for r in rows if r["variant"] == "neural"])
    assert out["neural_draws_minus_neural"]["pgd_0.1"]["mean"] == pytest.approx((draws - neural_pgd).mean())
    assert set(out) == {"rows", "summary", "neural_minus_pixel", "neural_draws_minus_neural"}


def test_the_benchmark_runs_every_variant_on_small_settings(shared_data):
    sim = pt.simulate.v1(n_neurons=10, n_images=100, image_size=(16, 24), seed=0)
    twin = pt.ImageTwin(sim.recording, hidden_channels=4, layers=1, posterior="readout")
    twin.fit(max_epochs=1, progress=False)
    out = run_transfer_comparison(
        seeds=(0, 1),
        epochs=1,
        epsilons=(0.1,),
        noise_stds=(0.3,),
        corruptions=("fog",),
        n_test=100,
        n_train=300,
        twin=twin,
        similarity=sim.recording.split("test"),
        verbose=False,
    )
    assert [r["variant"] for r in out["rows"]] == list(VARIANTS) * 2
    assert all(r["weight"] in WEIGHTS for r in out["rows"] if r["variant"] != "baseline")
    assert set(out["summary"]["neural"]) == {"clean", "corruption_mean", "noise_0.3", "fgsm_0.1", "pgd_0.1"}
    assert all(r["pgd_0.1"] <= r["clean"] + 0.05 for r in out["rows"])
    assert set(out["neural_minus_pixel"]) == set(out["summary"]["neural"])
    assert set(out["neural_draws_minus_neural"]) == set(out["summary"]["neural"])
    assert "twin" not in out  # scored only when the benchmark fits the twin itself


def test_the_benchmark_names_the_data_sets_it_knows():
    with pytest.raises(pt.DataError, match="data.*cowley_v4_210224.*'mnist'"):
        run_transfer_comparison("mnist", seeds=(0,), verbose=False)
