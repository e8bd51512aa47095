"""The gaze twin on free-viewing simulations with known truth, beside the twins that lack what it
adds, each side with the same data and the same fitting budget.

- **GazeTwin** with its defaults (area-level priors).
- **Independent priors**: the same twin with ``area_prior=False`` (gaze places every receptive
  field, each neuron's offset and size on its own).
- **ImageTwin on the whole scene**: gaze-agnostic; every frame is an image trial showing the
  trial's scene, its response that frame's (what a fixation model sees when the eyes move).

Each is scored on the test scenes (held-out log-likelihood, bits per neuron per frame; single-trial
correlation over frames). The gaze twin's posterior is checked against the simulator's truth
(:func:`truth_checks`).
"""

from __future__ import annotations

import time

import numpy as np

from probtwin import metrics
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.simulate.free_viewing import free_viewing
from probtwin.twins.gaze import GazeTwin
from probtwin.twins.image import ImageTwin

__all__ = ["fixation_comparison", "prior_comparison", "run_free_viewing_comparison", "scenes_per_frame", "truth_checks"]


def scenes_per_frame(rec: Recording) -> Recording:
    """Every frame of a free-viewing recording as an image trial showing its scene, without gaze:
    stimuli (trials * frames, C, H, W), that frame's responses, the tier of its trial."""
    frames = rec.n_frames
    if frames is None or rec.stimulus_kind != "images":
        raise DataError("recording", "scenes (trials, C, H, W) with responses per frame", f"{rec.stimulus_kind}")
    x = np.asarray(rec.stimuli)
    return Recording(
        np.repeat(x, frames, axis=0),
        np.asarray(rec.responses).reshape(-1, rec.n_neurons),
        tiers=np.repeat(np.asarray(rec.tiers), frames),
        stimulus_ids=np.repeat(np.asarray(rec.stimulus_ids), frames),
        name=f"{rec.name}_frames",
    )


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def truth_checks(twin: GazeTwin, sim, alpha: float = 0.1, num_samples: int = 400) -> dict:
    """A fitted gaze twin's posterior against the simulator's truth.

    Returns
    -------
    dict
        Per area ``slope_<area>`` (posterior mean), ``slope_<area>_lower``/``_upper`` (90%),
        ``slope_<area>_true``, ``slope_<area>_relative_error``, ``slope_<area>_covered``;
        ``reference_auc`` (P(scene-centred) against the truth), ``scene_centred_fdr`` and
        ``scene_centred_power`` of the discoveries at ``alpha``; ``remap_r`` (posterior means
        against the truth, eye-centred neurons), ``remapping_fdr`` and ``remapping_power`` (the
        remapping test at ``alpha``, delta 0.1); ``gain_field_r``; ``offset_error_px`` (median,
        eye-centred neurons) and ``offset_error_aligned_px`` (after removing the median error
        vector: the core may place its features a few pixels off the readout point, a
        translation every neuron shares); ``size_log_r``.
    """
    t = sim.truth
    d = twin.parameter_draws(num_samples)
    out: dict = {}
    if twin.config["area_prior"]:
        laws = twin.size_eccentricity(num_samples=num_samples)
        names = list(t["area_names"])
        for area, row in laws.iterrows():
            true = float(t["area_beta"][names.index(area)])
            out[f"slope_{area}"] = float(row["slope"])
            out[f"slope_{area}_lower"], out[f"slope_{area}_upper"] = (
                float(row["slope_lower"]),
                float(row["slope_upper"]),
            )
            out[f"slope_{area}_true"] = true
            out[f"slope_{area}_relative_error"] = abs(float(row["slope"]) - true) / true
            out[f"slope_{area}_covered"] = bool(row["slope_lower"] <= true <= row["slope_upper"])
    scene = t["scene_centred"]
    frames = twin.reference_frames(alpha=alpha, num_samples=num_samples)
    found = frames["scene_centred"].to_numpy()
    out["reference_auc"] = metrics.roc_auc(scene, frames["p_scene_centred"].to_numpy())
    out["scene_centred_fdr"] = float(np.mean(~scene[found])) if found.any() else 0.0
    out["scene_centred_power"] = float(np.mean(found[scene])) if scene.any() else float("nan")
    eye = ~scene
    remaps = t["remap"] > 0
    table = twin.remapping(delta=0.1, alpha=alpha, num_samples=num_samples)
    found = table["discovery"].to_numpy()
    out["remap_r"] = _r(d["remap"].mean(0)[eye], t["remap"][eye])
    out["remapping_fdr"] = float(np.mean(~remaps[found])) if found.any() else 0.0
    out["remapping_power"] = float(np.mean(found[remaps])) if remaps.any() else float("nan")
    out["gain_field_r"] = _r(d["gain_field"].mean(0), t["gain_field"])
    error = d["offset"].mean(0)[eye] - t["offset"][eye]
    out["offset_error_px"] = float(np.median(np.linalg.norm(error, axis=1)))
    out["offset_error_aligned_px"] = float(np.median(np.linalg.norm(error - np.median(error, 0), axis=1)))
    out["size_log_r"] = _r(np.log(d["size"].mean(0)), np.log(t["size"]))
    return out


def _fit(twin, time_limit: float) -> tuple:
    start = time.perf_counter()
    history = twin.fit(time_limit=time_limit, progress=False)
    return twin, len(history), time.perf_counter() - start


def run_free_viewing_comparison(
    n_neurons: int = 300,
    n_scenes: int = 200,
    n_frames: int = 80,
    seed: int = 5,
    time_limit: float = 900.0,
    sides: tuple[str, ...] = ("gaze_twin", "independent_priors", "image_twin_whole_scene"),
) -> dict:
    """Fit each side on one simulation (:func:`probtwin.simulate.free_viewing`) with
    ``time_limit`` seconds each and score the test scenes.

    Returns
    -------
    dict
        Per side: ``<side>_bits`` (held-out log-likelihood, bits per neuron per frame),
        ``<side>_correlation``, ``<side>_epochs``, ``<side>_seconds``; ``true_bits`` and
        ``true_correlation`` (the simulator's mean); the margins ``margin_over_<side>`` (bits);
        the gaze twin's :func:`truth_checks` as ``gaze_twin_<check>``.
    """
    sim = free_viewing(n_neurons=n_neurons, n_scenes=n_scenes, n_frames=n_frames, seed=seed)
    rec = sim.recording
    test = rec.split("test")
    y = np.asarray(test.responses)
    truth = sim.truth["mean_response"][test.trial_index]
    out: dict = {"simulation": f"{n_neurons} neurons, {n_scenes} scenes of {n_frames} frames, seed {seed}"}
    out["true_correlation"] = float(np.nanmean(metrics.single_trial_correlation(y, truth)))
    out["true_bits"] = float(sim.truth["log_likelihood"][test.trial_index].sum() / y.size / np.log(2))
    for side in sides:
        if side in ("gaze_twin", "independent_priors"):
            twin, epochs, seconds = _fit(GazeTwin(rec, area_prior=side == "gaze_twin"), time_limit)
            scores = twin.evaluate(rec, "test")
            if side == "gaze_twin":
                out.update({f"gaze_twin_{key}": value for key, value in truth_checks(twin, sim).items()})
                out["gaze_twin_coverage_90"] = scores["coverage_90"]
        elif side == "image_twin_whole_scene":
            frames = scenes_per_frame(rec)
            one_fit = ImageTwin(frames, posterior="readout")  # the gaze twin's posterior: one fit
            twin, epochs, seconds = _fit(one_fit, time_limit)
            scores = twin.evaluate(frames, "test")
        else:
            raise DataError("sides", "'gaze_twin', 'independent_priors' or 'image_twin_whole_scene'", repr(side))
        out[f"{side}_bits"] = scores["log_likelihood_bits"]
        out[f"{side}_correlation"] = scores["single_trial_correlation"]
        out[f"{side}_epochs"], out[f"{side}_seconds"] = epochs, seconds
    for side in sides:
        if side != "gaze_twin" and "gaze_twin" in sides:
            out[f"margin_over_{side}"] = out["gaze_twin_bits"] - out[f"{side}_bits"]
    return out


def prior_comparison(neurons_per_area: int = 15, n_scenes: int = 200, seed: int = 5, time_limit: float = 600.0) -> dict:
    """Receptive-field offsets with few neurons per area: the hierarchical area prior against
    independent per-neuron priors, on one simulation (3 areas), the same budget each.

    Returns
    -------
    dict
        Per side (``area_prior``, ``independent``): ``<side>_offset_error_px``,
        ``<side>_offset_error_aligned_px`` (median over eye-centred neurons; see
        :func:`truth_checks`), ``<side>_size_log_error`` (median absolute error of log size),
        ``<side>_bits``.
    """
    sim = free_viewing(n_neurons=3 * neurons_per_area, n_scenes=n_scenes, seed=seed)
    t = sim.truth
    eye = ~t["scene_centred"]
    out: dict = {"simulation": f"{neurons_per_area} neurons per area, {n_scenes} scenes, seed {seed}"}
    for side, prior in (("area_prior", True), ("independent", False)):
        twin, _, _ = _fit(GazeTwin(sim.recording, area_prior=prior), time_limit)
        d = twin.parameter_draws(200)
        error = d["offset"].mean(0)[eye] - t["offset"][eye]
        out[f"{side}_offset_error_px"] = float(np.median(np.linalg.norm(error, axis=1)))
        out[f"{side}_offset_error_aligned_px"] = float(np.median(np.linalg.norm(error - np.median(error, 0), axis=1)))
        out[f"{side}_size_log_error"] = float(np.median(np.abs(np.log(d["size"].mean(0)) - np.log(t["size"]))))
        out[f"{side}_bits"] = twin.evaluate(sim.recording, "test")["log_likelihood_bits"]
    return out


def fixation_comparison(session: str = "201025", time_limit: float = 600.0, root=None) -> dict:
    """The fixation special case on real data: ``GazeTwin`` and ``ImageTwin``, each with its
    defaults and ``time_limit`` seconds, on a Cowley V4 session (one response per image, the eye
    at the image's centre), scored on its test images.

    Returns
    -------
    dict
        Per side (``gaze_twin``, ``image_twin``): ``<side>_correlation`` (single-trial
        correlation, mean over neurons), ``<side>_bits`` (held-out log-likelihood, bits per
        neuron and trial), ``<side>_epochs``, ``<side>_seconds``.
    """
    import probtwin as pt

    rec = pt.datasets.cowley_v4(session, root=root)
    out: dict = {"session": session}
    for side, cls in (("gaze_twin", GazeTwin), ("image_twin", ImageTwin)):
        twin, epochs, seconds = _fit(cls(rec, posterior="readout"), time_limit)  # one fit each
        scores = twin.evaluate(rec, "test")
        out[f"{side}_correlation"] = scores["single_trial_correlation"]
        out[f"{side}_bits"] = scores["log_likelihood_bits"]
        out[f"{side}_epochs"], out[f"{side}_seconds"] = epochs, seconds
    return out
