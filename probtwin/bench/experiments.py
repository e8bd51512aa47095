"""In-silico experiments against the simulator's truth: state-dependent tuning found by the twin's
hypothesis test beside a Welch t-test with Benjamini-Hochberg, coverage of tuning-curve bands,
and most exciting inputs against the true Gabor filters."""

from __future__ import annotations

import time
from typing import Any

import arviz as az
import numpy as np
import xarray as xr
from scipy import stats

from probtwin import experiments, hypothesis
from probtwin.simulate import v1
from probtwin.simulate.population import gabor_bank
from probtwin.simulate.v1 import Simulation
from probtwin.twins.image import ImageTwin

__all__ = [
    "benjamini_hochberg",
    "fit_state_twin",
    "mei_against_truth",
    "pupil_states",
    "run_state_tests",
    "state_test",
    "true_state_effect",
    "true_tuning",
    "tuning_coverage",
    "welch_bh",
]


def benjamini_hochberg(p: np.ndarray, alpha: float) -> np.ndarray:
    """Benjamini-Hochberg discoveries at false discovery rate ``alpha``, (tests,) bool."""
    order = np.argsort(p)
    passed = np.flatnonzero(p[order] <= alpha * np.arange(1, len(p) + 1) / len(p))
    out = np.zeros(len(p), dtype=bool)
    if len(passed):
        out[order[: passed[-1] + 1]] = True
    return out


def welch_bh(responses_a: np.ndarray, responses_b: np.ndarray, alpha: float) -> np.ndarray:
    """Per-neuron Welch t-test of responses (trials, neurons) in two states, then Benjamini-Hochberg."""
    _, p = stats.ttest_ind(responses_a, responses_b, axis=0, equal_var=False)
    return benjamini_hochberg(np.nan_to_num(p, nan=1.0), alpha)


def _rates(found: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    n_found = int(found.sum())
    return {
        "discoveries": n_found,
        "fdr": float((found & ~truth).sum() / max(n_found, 1)),
        "power": float((found & truth).sum() / max(int(truth.sum()), 1)),
    }


def pupil_states(sim: Simulation, low: float = 10.0, high: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    """Two behavioural states (1, B): small and large pupil (percentiles), other variables at their median."""
    behavior = np.asarray(sim.recording.behavior)
    a, b = np.median(behavior, axis=0), np.median(behavior, axis=0)
    a[0], b[0] = np.percentile(behavior[:, 0], [low, high])
    return a[None], b[None]


def _stimuli(twin: ImageTwin) -> experiments.StimulusSet:
    return experiments.gratings(np.linspace(0, np.pi, 12, endpoint=False), (0.08, 0.12, 0.16), 4, twin=twin)


def true_tuning(
    sim: Simulation, stimuli: experiments.StimulusSet, state: np.ndarray | None = None, average: Any = "phase"
) -> xr.DataArray:
    """The simulated neurons' true tuning curves (mean responses) in a state (None: the average
    state), averaged over ``average``: dims (*parameters, neuron)."""
    da = xr.DataArray(sim.respond(stimuli.images, state)[None], dims=("sample", "stimulus", "neuron"))
    return experiments.tuning._average(da, stimuli.parameters, average).isel(sample=0).transpose(..., "neuron")


def true_state_effect(sim: Simulation, stimuli: experiments.StimulusSet, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The simulated neurons' change of preferred orientation (degrees) between the states,
    measured as the twin measures it, on their true tuning curves."""
    average = [c for c in stimuli.parameters.columns if c != "orientation"]
    pa, pb = (experiments.preferred_orientation(true_tuning(sim, stimuli, s, average)).values for s in (a, b))
    return np.rad2deg((pb - pa + np.pi / 2) % np.pi - np.pi / 2)


def fit_state_twin(sim: Simulation, time_limit: float, seed: int = 0, **options: Any) -> ImageTwin:
    """The twin the state tests use: behaviour in a Bayesian readout (not the core), 16 channels."""
    settings = dict(hidden_channels=16, behavior_in_core=False, state_readout=True, seed=seed)
    settings |= options
    twin = ImageTwin(sim.recording, **settings)
    twin.fit(max_epochs=300, time_limit=time_limit, progress=False, seed=seed)
    return twin


def state_test(
    twin: ImageTwin,
    sim: Simulation,
    deltas: tuple[float | None, ...] = (5.0, 10.0),
    alpha: float = 0.05,
    num_samples: int = 200,
    repeats: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Which neurons change preferred orientation with pupil: the twin's test at each ``delta``
    (degrees; None: the sign) and Welch + BH.

    The animal's side: ``repeats`` Poisson responses to each grating in each state (the
    simulator at the same two states), one Welch t-test per neuron, Benjamini-Hochberg at
    ``alpha``. Both are scored against the simulator's truth (``truth["shifted"]``).
    """
    a, b = pupil_states(sim)
    stimuli = _stimuli(twin)
    effect = experiments.compare_states(twin, stimuli, a, b, "preferred_orientation", num_samples=num_samples)
    truth = np.asarray(sim.truth["shifted"], bool)
    rng = np.random.default_rng(seed)
    raw = [rng.poisson(np.repeat(sim.respond(stimuli.images, s), repeats, axis=0)) for s in (a, b)]
    true_effect = true_state_effect(sim, stimuli, a, b)
    out: dict[str, Any] = {"welch_bh": _rates(welch_bh(raw[0], raw[1], alpha), truth), "true_effect": true_effect}
    for delta in deltas:
        table = hypothesis.test(effect, delta=delta, alpha=alpha)
        out[f"twin_delta_{delta}"] = _rates(table["discovery"].to_numpy(), truth) | {
            "expected_fdr": table.attrs["expected_fdr"]
        }
        out.setdefault("table", table)
    out["effect_r"] = float(np.corrcoef(effect.mean("sample"), true_effect)[0, 1])
    out["true_shift_median"] = float(np.median(np.abs(true_effect[truth]))) if truth.any() else 0.0
    out["twin_shift_median"] = float(np.median(np.abs(effect.mean("sample").values[truth]))) if truth.any() else 0.0
    return out


def tuning_coverage(twin: ImageTwin, sim: Simulation, level: float = 0.9, num_samples: int = 200) -> dict:
    """Fraction of (orientation, spatial frequency, neuron) points of the true tuning curves (at
    the average state) inside the twin's central ``level`` credible band; and their correlation."""
    stimuli = _stimuli(twin)
    curve = experiments.tuning_curve(twin, stimuli, num_samples=num_samples)
    true = true_tuning(sim, stimuli)
    lo, hi = curve.quantile([(1 - level) / 2, (1 + level) / 2], "sample")
    t = true.transpose(*lo.dims).values
    inside = (t >= lo.values) & (t <= hi.values)
    mean = curve.mean("sample").transpose(*lo.dims).values
    return {
        "coverage": float(inside.mean()),
        "correlation": float(np.corrcoef(mean.ravel(), t.ravel())[0, 1]),
        "band_width_median": float(np.median(hi.values - lo.values)),
        "points": int(inside.size),
    }


def mei_against_truth(
    twin: ImageTwin, sim: Simulation, neurons: np.ndarray, num_samples: int = 5, steps: int = 200, seed: int = 0
) -> dict[str, Any]:
    """MEIs of simple cells against their true Gabor filters.

    Correlation: absolute Pearson r between the MEI and the neuron's true (even) Gabor over the
    pixels within two envelope widths of its centre. Drive: the true neuron's mean response to
    the MEI (average state, no eye movement) against its largest to the training images.
    """
    result = experiments.mei(twin, neurons, num_samples=num_samples, steps=steps, seed=seed)
    p = sim.population
    height, width = p.image_size
    even, _ = gabor_bank(
        p.rf_position[neurons],
        p.orientation[neurons],
        p.spatial_frequency[neurons],
        p.envelope_sigma[neurons],
        p.phase[neurons],
        (height, width),
    )
    y, x = np.mgrid[0:height, 0:width]
    images = result["image"].values[:, :, 0].reshape(num_samples, len(neurons), -1)  # (S, n, pixels)
    corr = np.empty((num_samples, len(neurons)))
    for j, i in enumerate(neurons):  # a handful of neurons: masks differ per neuron
        inside = ((x - p.rf_position[i, 0]) ** 2 + (y - p.rf_position[i, 1]) ** 2).ravel() <= (
            2 * p.envelope_sigma[i]
        ) ** 2
        corr[:, j] = [abs(np.corrcoef(img[inside], even[j][inside])[0, 1]) for img in images[:, j]]
    train = sim.recording.split("train")
    best_training = sim.respond(np.asarray(train.stimuli)).max(axis=0)[neurons]
    drive = sim.respond(result["image"].values.reshape(-1, 1, height, width)).reshape(num_samples, len(neurons), -1)
    drive = drive[:, np.arange(len(neurons)), neurons]
    return {
        "correlation": corr,
        "drive": drive,
        "best_training": best_training,
        "correlation_median": float(np.median(corr)),
        "fraction_correlation_08": float((corr >= 0.8).mean()),
        "fraction_above_training": float((drive > best_training[None]).mean()),
        "result": result,
    }


def run_state_tests(
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    n_neurons: int = 100,
    n_images: int = 2500,
    time_limit: float = 480.0,
    deltas: tuple[float | None, ...] = (5.0, 10.0),
    alpha: float = 0.05,
    pupil_shift_fraction: float = 0.2,
    mei_neurons: int = 10,
    report=print,
) -> dict[str, Any]:
    """The issue's simulation targets, seed by seed: state tests (twin and Welch + BH), tuning
    coverage and MEIs; a fresh simulation and twin per seed."""
    rows = []
    for seed in seeds:
        sim = v1(n_neurons=n_neurons, n_images=n_images, seed=seed, pupil_shift_fraction=pupil_shift_fraction)
        start = time.perf_counter()
        twin = fit_state_twin(sim, time_limit, seed)
        fit_seconds = time.perf_counter() - start
        test = state_test(twin, sim, deltas, alpha, seed=seed)
        coverage = tuning_coverage(twin, sim)
        simple = np.flatnonzero(~sim.truth["complex_cell"])[:mei_neurons]
        meis = mei_against_truth(twin, sim, simple, seed=seed)
        loo = az.loo(twin.to_arviz(sim.recording, "test", num_samples=100))
        row = {"seed": seed, "epochs": len(twin.history), "fit_seconds": fit_seconds}
        row |= {"elpd_loo": float(loo.elpd_loo), "p_loo": float(loo.p_loo), "loo_points": int(loo.n_data_points)}
        for delta in deltas:
            rates = test[f"twin_delta_{delta}"]
            row |= {f"twin_fdr_d{delta}": rates["fdr"], f"twin_power_d{delta}": rates["power"]}
            row |= {f"twin_expected_fdr_d{delta}": rates["expected_fdr"]}
        row |= {
            "welch_fdr": test["welch_bh"]["fdr"],
            "welch_power": test["welch_bh"]["power"],
            "welch_discoveries": test["welch_bh"]["discoveries"],
            "effect_r": test["effect_r"],
            "true_shift_median": test["true_shift_median"],
            "twin_shift_median": test["twin_shift_median"],
            "tuning_coverage": coverage["coverage"],
            "tuning_correlation": coverage["correlation"],
            "mei_correlation_median": meis["correlation_median"],
            "mei_fraction_r08": meis["fraction_correlation_08"],
            "mei_fraction_above_training": meis["fraction_above_training"],
        }
        rows.append(row)
        report(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    report("mean " + " ".join(f"{k}={v:.3f}" for k, v in summary.items()))
    return {"rows": rows, "mean": summary}
