"""In-silico experiments against the simulator's truth: state-dependent tuning found by the twin's
hypothesis test beside the classical experiment (gratings with repeats in both states, a
permutation test of a preferred-orientation change per neuron, Benjamini-Hochberg), coverage of tuning-curve bands,
and most exciting inputs against the true Gabor filters."""

from __future__ import annotations

import time
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from probtwin import calibration, experiments, hypothesis
from probtwin.errors import DataError
from probtwin.simulate import v1
from probtwin.simulate.population import gabor_bank
from probtwin.simulate.v1 import Simulation
from probtwin.twins.image import ImageTwin
from probtwin.twins.posterior import resolve_posterior

__all__ = [
    "benjamini_hochberg",
    "classical_state_test",
    "classical_state_tests",
    "fit_state_twin",
    "mei_against_truth",
    "pupil_states",
    "run_state_tests",
    "state_test",
    "true_state_effect",
    "true_tuning",
    "tuning_coverage",
    "orientation_shift_test",
    "posterior_targets",
    "real_calibration",
    "run_default_state_tests",
    "run_posterior_comparison",
]


def benjamini_hochberg(p: np.ndarray, alpha: float) -> np.ndarray:
    """Benjamini-Hochberg discoveries at false discovery rate ``alpha``, (tests,) bool."""
    order = np.argsort(p)
    passed = np.flatnonzero(p[order] <= alpha * np.arange(1, len(p) + 1) / len(p))
    out = np.zeros(len(p), dtype=bool)
    if len(passed):
        out[order[: passed[-1] + 1]] = True
    return out


def orientation_shift_test(
    responses_a: np.ndarray,
    responses_b: np.ndarray,
    orientation: np.ndarray,
    permutations: int = 2000,
    seed: int = 0,
    chunk: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, a permutation test that the preferred orientation differs between two states.

    The statistic is the one the twin measures: the change of the vector-average preferred
    orientation, ``|arg(V_b) - arg(V_a)| / 2`` (wrapped to [0, 90] degrees) with
    ``V_s = sum_stimuli mean_repeats r exp(2 i theta)``, which a gain change leaves unchanged.
    Its null distribution permutes the state labels among each grating's trials, all neurons
    with the same permutation, ``chunk`` permutations at a time.

    Parameters
    ----------
    responses_a, responses_b : array, shape (stimuli, repeats, neurons)
        The responses to each grating's repeats in either state.
    orientation : array, shape (stimuli,)
        Each grating's orientation (radians).

    Returns
    -------
    shift : (neurons,) the observed change (degrees, signed, b minus a)
    p : (neurons,) permutation p-values, ``(1 + #{null >= observed}) / (1 + permutations)``
    """
    a, b = (np.asarray(r, dtype=np.float64) for r in (responses_a, responses_b))
    if a.ndim != 3 or a.shape != b.shape or len(orientation) != len(a):
        raise DataError("responses", "two arrays (stimuli, repeats, neurons) of one shape", f"{a.shape}, {b.shape}")
    repeats = a.shape[1]
    y = np.concatenate([a, b], axis=1)  # (stimuli, 2 repeats, neurons)
    phase = np.exp(2j * np.asarray(orientation, dtype=np.float64))

    def shift(mean_a: np.ndarray, mean_b: np.ndarray) -> np.ndarray:  # (..., stimuli, neurons) -> (..., neurons)
        va, vb = (np.einsum("...sn,s->...n", m, phase) for m in (mean_a, mean_b))
        return (np.angle(vb) - np.angle(va)) / 2

    def wrapped(d: np.ndarray) -> np.ndarray:
        return (d + np.pi / 2) % np.pi - np.pi / 2

    observed = wrapped(shift(a.mean(1), b.mean(1)))
    total = y.sum(1)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(a.shape[-1])
    for start in range(0, permutations, chunk):
        n = min(chunk, permutations - start)
        to_a = np.argsort(rng.random((n, len(y), 2 * repeats)), axis=-1)[..., :repeats]  # (n, stimuli, repeats)
        weight = np.zeros((n, len(y), 2 * repeats))
        np.put_along_axis(weight, to_a, 1.0, axis=-1)
        sum_a = np.einsum("psr,srn->psn", weight, y)
        null = wrapped(shift(sum_a / repeats, (total - sum_a) / repeats))
        exceed += (np.abs(null) >= np.abs(observed) - 1e-12).sum(0)
    return np.rad2deg(observed), (1 + exceed) / (1 + permutations)


def _rates(found: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    n_found = int(found.sum())
    return {
        "discoveries": n_found,
        "fdr": float((found & ~truth).sum() / max(n_found, 1)),
        "power": float((found & truth).sum() / max(int(truth.sum()), 1)),
    }


def _report(report: Any, row: dict) -> None:
    """One result row as ``key=value`` (floats to 3 decimals), where ``report`` is not None."""
    if report is not None:
        report(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


def pupil_states(sim: Simulation, low: float = 10.0, high: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    """Two behavioural states (1, B): small and large pupil (percentiles), other variables at their median."""
    behavior = np.asarray(sim.recording.behavior)
    a, b = np.median(behavior, axis=0), np.median(behavior, axis=0)
    a[0], b[0] = np.percentile(behavior[:, 0], [low, high])
    return a[None], b[None]


def _stimuli(twin: ImageTwin) -> experiments.StimulusSet:
    """The benchmark's gratings, 12 orientations x 3 spatial frequencies x 4 phases, in the pixel
    statistics of the twin's training images."""
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


def fit_state_twin(
    sim: Simulation, time_limit: float, seed: int = 0, max_epochs: int = 300, **options: Any
) -> ImageTwin:
    """The twin the state tests use: behaviour in a Bayesian readout (not the core), 16 channels;
    ``options`` change its settings."""
    settings = dict(hidden_channels=16, behavior_in_core=False, state_readout=True, seed=seed)
    settings |= options
    twin = ImageTwin(sim.recording, **settings)
    twin.fit(max_epochs=max_epochs, time_limit=time_limit, progress=False, seed=seed)
    return twin


def classical_state_test(
    sim: Simulation, stimuli: experiments.StimulusSet, repeats: int = 10, alpha: float = 0.05, seed: int = 0
) -> dict[str, float]:
    """The in-vivo experiment the twin's state test stands in for, on the simulator: ``repeats``
    Poisson responses to each grating in each pupil state (:func:`pupil_states`), a permutation
    test of a preferred-orientation change per neuron (:func:`orientation_shift_test`),
    Benjamini-Hochberg at ``alpha``; its discoveries, FDR and power against ``truth["shifted"]``."""
    a, b = pupil_states(sim)
    rng = np.random.default_rng(seed)
    raw = [rng.poisson(np.repeat(sim.respond(stimuli.images, s)[:, None], repeats, axis=1)) for s in (a, b)]
    _, p = orientation_shift_test(raw[0], raw[1], stimuli.parameters["orientation"].to_numpy(), seed=seed)
    return _rates(benjamini_hochberg(p, alpha), np.asarray(sim.truth["shifted"], bool))


def classical_state_tests(
    seeds: Any = range(5), n_neurons: int = 100, n_images: int = 2500, pupil_shift_fraction: float = 0.2, report=print
) -> dict[str, float]:
    """:func:`classical_state_test` on the benchmark's simulations (no twin is fitted), seed by
    seed, and the mean."""
    rows = []
    for seed in seeds:
        sim = v1(n_neurons=n_neurons, n_images=n_images, seed=seed, pupil_shift_fraction=pupil_shift_fraction)
        frame = ImageTwin(
            sim.recording, hidden_channels=1, layers=1, position_init="uniform"
        )  # unfitted: its pixel statistics
        rows.append(classical_state_test(sim, _stimuli(frame), seed=seed))
        report(f"seed {seed}: " + " ".join(f"{k}={v:.3f}" for k, v in rows[-1].items()))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    report("mean " + " ".join(f"{k}={v:.3f}" for k, v in mean.items()))
    return mean


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
    (degrees; None: the sign), beside the in-vivo experiment it stands in for.

    The twin's side: its recording (the training images at the recorded states). The animal's
    side: ``repeats`` Poisson responses to each grating of the twin's grating set in each state
    (the simulator at the same two states), a per-neuron permutation test of a change of
    preferred orientation (:func:`orientation_shift_test`), Benjamini-Hochberg at ``alpha``.
    Both are scored against the simulator's truth (``truth["shifted"]``).
    """
    a, b = pupil_states(sim)
    stimuli = _stimuli(twin)
    effect = experiments.compare_states(twin, stimuli, a, b, "preferred_orientation", num_samples=num_samples)
    truth = np.asarray(sim.truth["shifted"], bool)
    true_effect = true_state_effect(sim, stimuli, a, b)
    classical = classical_state_test(sim, stimuli, repeats, alpha, seed)
    out: dict[str, Any] = {"classical": classical, "true_effect": true_effect}
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
            "classical_fdr": test["classical"]["fdr"],
            "classical_power": test["classical"]["power"],
            "classical_discoveries": test["classical"]["discoveries"],
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
        _report(report, row)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    report("mean " + " ".join(f"{k}={v:.3f}" for k, v in summary.items()))
    return {"rows": rows, "mean": summary}


def posterior_targets(
    twin: ImageTwin, sim: Simulation, num_samples: int = 200, seed: int = 0, deltas: tuple = (5.0, 10.0)
) -> dict[str, Any]:
    """The whole-twin posterior's targets on one simulation: coverage of the mean responses to the
    held-out natural images (each test trial's true mean, at its recorded behaviour and gaze),
    of the receptive-field positions and of the tuning curves, and the state tests beside the
    classical experiment; with the seconds the mean-response prediction took."""
    test = sim.recording.split("test")
    truth = sim.respond(np.asarray(test.stimuli), np.asarray(test.behavior), np.asarray(test.gaze))
    start = time.perf_counter()
    mean = calibration.mean_calibration(twin, test, truth, num_samples=num_samples, seed=seed)
    predict_seconds = time.perf_counter() - start
    positions = twin.readout_positions(level=0.9)
    true_position = sim.truth["rf_position"]
    inside = np.all((positions["lower"] <= true_position) & (true_position <= positions["upper"]), axis=1)
    tuning = tuning_coverage(twin, sim, num_samples=num_samples)
    states = state_test(twin, sim, deltas=deltas, num_samples=num_samples, seed=seed)
    out = {
        "mean_coverage_90": mean.at(0.9),
        "mean_coverage_50": mean.at(0.5),
        "predict_seconds": predict_seconds,
        "position_coverage_90": float(inside.mean()),
        "position_error_median": float(np.median(np.linalg.norm(positions["mean"] - true_position, axis=1))),
        "tuning_coverage_90": tuning["coverage"],
        "tuning_correlation": tuning["correlation"],
        "classical_fdr": states["classical"]["fdr"],
        "classical_power": states["classical"]["power"],
    }
    for delta in deltas:
        rates = states[f"twin_delta_{delta}"]
        out |= {f"twin_fdr_d{delta}": rates["fdr"], f"twin_power_d{delta}": rates["power"]}
    return out


def _budget(posterior: str, time_limit: float) -> float:
    """One fit's ``time_limit`` for each member of an ensemble or bootstrap (its default number); SWAG's
    trajectory a quarter more."""
    members = resolve_posterior(posterior, None)
    return time_limit * {"ensemble": members, "bootstrap": members, "swag": 1.25}.get(posterior, 1)


def run_posterior_comparison(
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    posteriors: tuple[str, ...] = ("readout", "swag", "ensemble"),
    n_neurons: int = 100,
    n_images: int = 2500,
    time_limit: float = 480.0,
    pupil_shift_fraction: float = 0.2,
    num_samples: int = 200,
    recalibrate: bool = False,
    mixture: bool = False,
    report=print,
) -> list[dict[str, Any]]:
    """:func:`posterior_targets` of each whole-twin posterior on the state benchmark's
    simulations (:func:`fit_state_twin`'s twin), seed by seed, with fit and predict seconds.

    ``time_limit`` is one fit's: a posterior of K fits (the ensemble) gets K times it, SWAG
    1.25 times (its fit, then a fifth more to collect the trajectory). With ``recalibrate``, each
    fitted twin is also scored after :meth:`~probtwin.twins.image.ImageTwin.recalibrate` on the
    validation tier (the row's posterior ``"<posterior>+recalibrated"``, its ``fit_seconds`` the
    fit's and the recalibration's). With ``mixture``, a posterior whose members combine as
    ``"student"`` (the ensemble's and bootstrap's default) is also scored with its members as
    drawn (``"<posterior>+mixture"``, the same fit).
    """
    rows = []

    def score(row: dict, twin: ImageTwin, sim: Simulation) -> None:
        row |= posterior_targets(twin, sim, num_samples=num_samples, seed=row["seed"])
        rows.append(row)
        _report(report, row)

    for seed in seeds:
        sim = v1(n_neurons=n_neurons, n_images=n_images, seed=seed, pupil_shift_fraction=pupil_shift_fraction)
        for posterior in posteriors:
            budget = _budget(posterior, time_limit)
            start = time.perf_counter()
            twin = fit_state_twin(sim, budget, seed, posterior=posterior)
            fitted = {"seed": seed, "posterior": posterior, "fit_seconds": time.perf_counter() - start}
            score(dict(fitted), twin, sim)
            if mixture and twin._combination() == "student":
                twin.combination = "mixture"
                score({**fitted, "posterior": f"{posterior}+mixture"}, twin, sim)
                twin.combination = "student"
            if recalibrate:
                begin = time.perf_counter()
                twin.recalibrate(sim.recording)
                seconds = fitted["fit_seconds"] + time.perf_counter() - begin
                score({**fitted, "posterior": f"{posterior}+recalibrated", "fit_seconds": seconds}, twin, sim)
    return rows


def run_default_state_tests(
    seeds: tuple[int, ...] = (7,),
    posteriors: tuple[str | None, ...] = (None,),
    n_neurons: int = 150,
    n_images: int = 2500,
    time_limit: float | None = 900.0,
    pupil_shift_fraction: float = 0.2,
    report=print,
) -> list[dict[str, Any]]:
    """The twin as a new user fits and tests it: ``ImageTwin(rec, state_readout=True)`` with its
    other settings at their defaults (``posterior`` too where an entry of ``posteriors`` is None),
    ``fit(time_limit=time_limit)`` for the whole fit (an ensemble's members share it; None: each
    fit to its early stop), then
    :func:`posterior_targets` with the state test at its defaults (``delta=None``: a discovery
    where the sign of the shift is certain, ``alpha=0.05``) and at 5 and 10 degrees, beside the
    classical experiment. The simulations are issue 14's user case: ``n_neurons`` neurons,
    ``n_images`` images, ``pupil_shift_fraction`` of them shifting preferred orientation."""
    rows = []
    for seed in seeds:
        sim = v1(n_neurons=n_neurons, n_images=n_images, seed=seed, pupil_shift_fraction=pupil_shift_fraction)
        for posterior in posteriors:
            options = {} if posterior is None else {"posterior": posterior}
            twin = ImageTwin(sim.recording, state_readout=True, **options)
            start = time.perf_counter()
            twin.fit(time_limit=time_limit, progress=False)
            row = {"seed": seed, "posterior": twin.config["posterior"], "fit_seconds": time.perf_counter() - start}
            row |= {"epochs": len(twin.history)}
            row |= posterior_targets(twin, sim, deltas=(None, 5.0, 10.0))
            rows.append(row)
            _report(report, row)
    return rows


def real_calibration(
    recording: Any,
    posteriors: tuple[str, ...] = ("readout", "ensemble"),
    time_limit: float = 300.0,
    num_samples: int = 100,
    report=print,
) -> list[dict[str, Any]]:
    """Each whole-twin posterior on a real recording with the twin's defaults: held-out (test)
    single-trial correlation and the coverage of the posterior predictive's central intervals at
    each nominal level (:func:`probtwin.calibration.single_trial_calibration`), with fit seconds.
    ``time_limit`` is one fit's (an ensemble's members get it each)."""
    rows = []
    for posterior in posteriors:
        twin = ImageTwin(recording, posterior=posterior)
        budget = _budget(posterior, time_limit)
        start = time.perf_counter()
        twin.fit(time_limit=budget, progress=False)
        row = {"posterior": posterior, "fit_seconds": time.perf_counter() - start}
        scores = twin.evaluate(recording, "test", num_samples=num_samples)
        row |= {"single_trial_correlation": scores["single_trial_correlation"], "coverage_90": scores["coverage_90"]}
        check = calibration.single_trial_calibration(twin, recording, "test", num_samples=num_samples)
        row |= {f"coverage_{level:g}": float(c) for level, c in zip(check.levels, check.coverage, strict=True)}
        rows.append(row)
        _report(report, row)
    return rows
