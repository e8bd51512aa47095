"""How a behavioural state changes responses and selectivity: posterior draws of the effect.

Franke et al. (2022) found that pupil dilation shifts the colour selectivity of mouse V1; the
question "does this neuron's selectivity change with state, and by how much?" is asked here of
the twin's posterior. Both states are evaluated under the *same* posterior draws, so the effect
samples carry the twin's uncertainty about the difference, not the sum of two uncertainties.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from probtwin.errors import DataError
from probtwin.experiments.stimuli import StimulusSet
from probtwin.experiments.tuning import _check_stimuli, tuning_curve

__all__ = [
    "STATISTICS",
    "compare_states",
    "direction_selectivity",
    "orientation_selectivity",
    "preferred_direction",
    "preferred_orientation",
]

STATISTICS = ("response", "log_gain", "preferred_orientation")


def preferred_orientation(curve: xr.DataArray) -> xr.DataArray:
    """Preferred orientation of tuning curves, by the vector average on the doubled angle.

    ``theta_pref = arg(sum_theta r(theta) exp(2 i theta)) / 2`` (orientation is periodic in pi),
    averaged over any other stimulus dimensions first.

    Parameters
    ----------
    curve : xarray.DataArray
        With an ``orientation`` dimension in radians (e.g. from :func:`tuning_curve`).

    Returns
    -------
    xarray.DataArray
        Radians in [0, pi), without the ``orientation`` dimension.
    """
    return (xr.apply_ufunc(np.angle, _circular_vector(curve, "orientation", 2)[0]) / 2) % np.pi


def _circular_vector(curve: xr.DataArray, dim: str, harmonic: int) -> tuple[xr.DataArray, xr.DataArray]:
    """``sum_theta r(theta) exp(harmonic i theta)`` and ``sum_theta r(theta)`` of tuning curves
    over the angle ``dim``, other stimulus dimensions averaged first."""
    if dim not in curve.dims:
        raise DataError("curve", f"tuning curves with a {dim!r} dimension", f"dims {curve.dims}")
    other = [d for d in curve.dims if d not in ("sample", "neuron", dim)]
    r = curve.mean(other) if other else curve
    return (r * np.exp(harmonic * 1j * r[dim])).sum(dim), r.sum(dim)


def orientation_selectivity(curve: xr.DataArray) -> xr.DataArray:
    """Orientation selectivity of tuning curves, ``|sum_theta r(theta) exp(2 i theta)| / sum_theta
    r(theta)`` (one minus the circular variance): 0 for a flat curve, 1 for one orientation;
    other stimulus dimensions averaged first, as :func:`preferred_orientation`."""
    vector, total = _circular_vector(curve, "orientation", 2)
    return xr.apply_ufunc(np.abs, vector) / total


def preferred_direction(curve: xr.DataArray) -> xr.DataArray:
    """Preferred direction of motion of direction tuning curves (e.g. to
    :func:`~probtwin.experiments.drifting_gratings`): ``arg(sum_theta r(theta) exp(i theta))``,
    radians in [0, 2 pi), other stimulus dimensions averaged first."""
    return xr.apply_ufunc(np.angle, _circular_vector(curve, "direction", 1)[0]) % (2 * np.pi)


def direction_selectivity(curve: xr.DataArray) -> xr.DataArray:
    """Direction selectivity index, the vector form ``|sum_theta r(theta) exp(i theta)| /
    sum_theta r(theta)``: 0 for equal responses to opposite directions, 1 for one direction
    only (Mazurek et al. 2014); per posterior draw when the curves have a ``sample`` dimension."""
    vector, total = _circular_vector(curve, "direction", 1)
    return xr.apply_ufunc(np.abs, vector) / total


def compare_states(
    twin: Any,
    stimuli: StimulusSet,
    behavior_a: np.ndarray,
    behavior_b: np.ndarray,
    statistic: str = "response",
    num_samples: int = 200,
    seed: int = 0,
    session: Any = None,
    min_selectivity: float = 0.1,
) -> xr.DataArray:
    """Posterior draws of the effect of going from state ``a`` to state ``b``, per neuron.

    Parameters
    ----------
    twin : Twin
    stimuli : StimulusSet
        The stimuli shown in both states (gratings with an ``orientation`` parameter for
        ``"preferred_orientation"``).
    behavior_a, behavior_b : numpy.ndarray, shape (1, B)
        The two states, raw units, one row each, broadcast over the stimuli.
    statistic : {"response", "log_gain", "preferred_orientation"}
        ``"response"``: the change of the mean response over the stimuli, ``b - a``;
        ``"log_gain"``: ``log(mean_b / mean_a)``; ``"preferred_orientation"``: the change of
        the preferred orientation (vector average of the phase-averaged tuning curve), degrees,
        wrapped to [-90, 90).
    num_samples : int
        Posterior draws (the same draws for both states).
    seed : int
    session : optional
    min_selectivity : float
        ``"preferred_orientation"`` only: a draw in which the neuron's orientation selectivity
        ``|sum_theta r(theta) exp(2 i theta)| / sum_theta r(theta)`` (0 flat, 1 one orientation)
        is below this in either state has no preferred orientation to change: its effect is 0.
        A nearly flat tuning curve's angle is noise; without the guard a test would find its
        changes. (Simulated V1 neurons' selectivity is 0.3 and more.)

    Warns
    -----
    UserWarning
        On a twin whose posterior covers its readout only (``posterior="readout"``): its
        effects' intervals are too narrow (measured on the simulator,
        :mod:`probtwin.twins.posterior`). On a twin whose core takes behaviour
        (``behavior_in_core=True``): the state effects through the core are point estimates (one
        per member of an ensemble), not in the readout's posterior.

    Returns
    -------
    xarray.DataArray, dims (sample, neuron)
        Named after the statistic; ``attrs`` hold the states and the units. Pass it to
        :func:`probtwin.hypothesis.test`.

    Notes
    -----
    On a twin whose members combine as ``"student"`` (an ensemble, a bagged posterior), each
    draw's effect is computed on one member's curves and the effects are then combined over
    the members (:meth:`~probtwin.twins.posterior.WholeTwinPosterior.statistic_draws`): the
    effect's true value is taken as exchangeable with the members' effects. Combining the curves
    first would give some draws curves far from every member's, whose preferred orientation is
    noise.

    Test a shift with the smallest one that matters (``hypothesis.test(effect, delta=5)``), not
    its sign alone (``delta=None``): a neuron that does not shift has a true shift of exactly 0,
    and a posterior a little too narrow around a small nonzero shift makes its sign certain. On
    a simulation of 150 neurons (the "Whole-twin posterior" page), after 15 minutes of fitting the
    sign test's realised FDR was 0.21-0.30 at ``alpha=0.05``, the test at 5 degrees 0.00
    (readout-only twin) and 0.17 (an ensemble of three 5-minute fits); the default ensemble fitted
    without a time limit had 0.04 and 0.00.
    """
    if statistic not in STATISTICS:
        raise DataError("statistic", f"one of {STATISTICS}", repr(statistic))
    stimuli = _check_stimuli(stimuli)
    if getattr(twin, "config", {}).get("posterior") == "readout":
        warnings.warn(
            "probtwin: this twin's posterior covers its readout only (posterior='readout'); its state "
            "effects' intervals are too narrow and a test on them can find more false discoveries "
            "than alpha (see the 'Whole-twin posterior' page): posterior='ensemble' widens them",
            UserWarning,
            stacklevel=2,
        )
    if getattr(twin, "config", {}).get("behavior_in_core"):
        warnings.warn(
            "probtwin: behaviour enters this twin's core (behavior_in_core=True), whose weights are "
            "point estimates (one per member of an ensemble): the state effects that pass through "
            "it have no posterior, and a test on them can find shifts that are not there. Fit with "
            "state_readout=True (behaviour then stays out of the core by default) to test state effects",
            UserWarning,
            stacklevel=2,
        )
    a, b = (twin._condition(name, s, 1) for name, s in (("behavior_a", behavior_a), ("behavior_b", behavior_b)))
    average = None
    if statistic == "preferred_orientation":
        if "orientation" not in stimuli.parameters.columns:
            raise DataError("stimuli", "a stimulus set with an 'orientation' parameter", f"{list(stimuli.parameters)}")
        average = [c for c in stimuli.parameters.columns if c != "orientation"]
    with twin.statistic_draws(num_samples, seed) as combine:  # the effect's draws combine, not the curves'
        curves = [tuning_curve(twin, stimuli, s, num_samples, seed, session, average=average) for s in (a, b)]
    if statistic == "preferred_orientation":
        pa, pb = (preferred_orientation(c) for c in curves)
        effect = np.rad2deg((pb - pa + np.pi / 2) % np.pi - np.pi / 2)
        tuned = (orientation_selectivity(curves[0]) >= min_selectivity) & (
            orientation_selectivity(curves[1]) >= min_selectivity
        )
        effect = effect.where(tuned, 0.0)
        units = "degrees"
    else:
        ma, mb = (c.mean([d for d in c.dims if d not in ("sample", "neuron")]) for c in curves)
        effect = mb - ma if statistic == "response" else np.log(mb) - np.log(ma)
        units = "response" if statistic == "response" else "log ratio"
    effect = combine(effect)
    effect = effect.transpose("sample", "neuron").rename(statistic)
    effect.attrs.update(behavior_a=a[0].tolist(), behavior_b=b[0].tolist(), units=units, statistic=statistic)
    return effect
