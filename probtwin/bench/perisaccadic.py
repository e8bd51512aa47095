"""Peri-saccadic receptive fields of real units (``nategh_perisaccadic``): the gaze twin against
two Poisson GLMs of the probes, scored per unit in held-out bits per spike.

Every side sees the same data: the probe maps of the training trials (a 9 x 9 grid, one map per
10 ms bin), the frames from the saccade's onset (the same in every trial), the spikes; the same
temporal window (lags 0 .. ``lags - 1`` frames, in the same bumps), and the validation trials to
choose its settings. None sees eye positions (the data have none).

- **Static GLM**: ``log lambda_tf = b + sum_{x,l} k(x, l) s_{t,f-l}(x)``, one spatio-temporal
  kernel for the whole trial (the probe's position x on the grid, its lag l in a bump basis),
  its smoothness over the grid and its size penalised.
- **Time-varying GLM** (the idea of the S-model, Niknam et al. 2019): the kernel and the offset
  vary smoothly with the time from saccade onset, ``k(x, l, f) = sum_j phi_j(f) k_j(x, l)``,
  bumps phi_j every ``spacing`` frames (summing to 1 at every frame), with a penalty on
  ``k_{j+1} - k_j`` on top of the static one.
- **GazeTwin** with its defaults (its fit with its own early stopping on the validation trials).

Each GLM's penalties are chosen per unit on the validation trials from a grid (the fits run for
all units at once, L-BFGS from the previous point of the grid). Scores on the test trials: the
Poisson log-likelihood of each side's rate (the twin's posterior mean rate) against each unit's
mean training rate, in bits per spike (:func:`probtwin.metrics.bits_per_spike`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from probtwin import metrics
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.nn.gaze import bumps, causal_filter, lag_basis

__all__ = ["fit_probe_glm", "lagged_probes", "run_perisaccadic_comparison", "time_basis"]


def lagged_probes(stimuli: np.ndarray, lags: int, n_basis: int) -> torch.Tensor:
    """Probe maps filtered causally by bumps over the lags: ``X_tf(x, b) = sum_l phi_b(l) s_{t,f-l}(x)``.

    Parameters
    ----------
    stimuli : numpy.ndarray, shape (trials, 1, frames, H, W)
    lags, n_basis : int
        Lags 0 .. ``lags - 1`` frames in ``n_basis`` Gaussian bumps (the gaze twin's basis).

    Returns
    -------
    torch.Tensor, shape (trials, frames, H * W, n_basis)
    """
    s = torch.as_tensor(np.asarray(stimuli, dtype=np.float32))
    t, c, f = s.shape[:3]
    x = s.reshape(t, c, f, -1).sum(1).transpose(1, 2)  # (T, HW, F)
    phi = lag_basis(lags, n_basis)  # (B, L)
    out = torch.stack([causal_filter(x, p.expand(x.shape[1], -1)) for p in phi], 2)  # (T, HW, B, F)
    return out.permute(0, 3, 1, 2).contiguous()


def time_basis(frames: int, spacing: float) -> torch.Tensor:
    """Gaussian bumps every ``spacing`` frames over a trial, each frame's row summing to 1, (frames, J)."""
    centres = torch.arange(0.0, frames - 1 + spacing, spacing)
    phi = bumps(torch.arange(frames, dtype=torch.float32), centres, 0.6 * spacing)
    return phi / phi.sum(-1, keepdim=True)


def _grid_difference(k: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Sum of squared differences of neighbouring grid places of kernels (..., H * W, B, N)."""
    g = k.reshape(*k.shape[:-3], *shape, *k.shape[-2:])
    return ((g[..., 1:, :, :, :] - g[..., :-1, :, :, :]) ** 2).sum() + (
        (g[..., 1:, :, :] - g[..., :-1, :, :]) ** 2
    ).sum()


def fit_probe_glm(
    x: torch.Tensor,
    y: torch.Tensor,
    phi: torch.Tensor,
    grid_shape: tuple[int, int],
    spatial: float,
    temporal: float,
    start: dict | None = None,
    max_iter: int = 150,
) -> dict[str, torch.Tensor]:
    """A Poisson GLM of lagged probes whose kernel and offset vary over the trial's frames in a
    basis, fitted by L-BFGS with penalties, all units at once.

    ``log lambda_tfn = sum_j phi_fj (b_jn + sum_{x,b} X_tf(x, b) k_j(x, b, n))``

    Parameters
    ----------
    x : torch.Tensor, shape (trials, frames, places, B)
        :func:`lagged_probes`.
    y : torch.Tensor, shape (trials, frames, units)
    phi : torch.Tensor, shape (frames, J)
        The time basis (J = 1 and ones: a static GLM).
    grid_shape : (int, int)
    spatial : float
        Weight of the grid smoothness and size penalty, ``||D k||^2 + ||k||^2``.
    temporal : float
        Weight of ``sum_j ||k_{j+1} - k_j||^2 + ||b_{j+1} - b_j||^2``.
    start : dict, optional
        Parameters to start from (a previous fit).

    Returns
    -------
    dict
        ``kernel`` (J, places, B, units), ``offset`` (J, units).
    """
    n_units = y.shape[-1]
    j = phi.shape[1]
    if start is None:
        rate = y.mean((0, 1)).clamp_min(1e-4)
        start = {
            "kernel": torch.zeros(j, x.shape[2], x.shape[3], n_units),
            "offset": rate.log().expand(j, n_units).clone(),
        }
    params = {k: v.detach().clone().requires_grad_(True) for k, v in start.items()}
    n_bins = y.shape[0] * y.shape[1]
    opt = torch.optim.LBFGS(list(params.values()), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        log_rate = _log_rate(x, phi, params)
        loss = (log_rate.exp() - y * log_rate).sum()
        k = params["kernel"]
        loss = loss + spatial * (_grid_difference(k, grid_shape) + (k**2).sum())
        if j > 1:
            loss = loss + temporal * (
                ((k[1:] - k[:-1]) ** 2).sum() + ((params["offset"][1:] - params["offset"][:-1]) ** 2).sum()
            )
        loss = loss / n_bins
        loss.backward()
        return loss

    opt.step(closure)
    return {k: v.detach() for k, v in params.items()}


def _log_rate(x: torch.Tensor, phi: torch.Tensor, params: dict) -> torch.Tensor:
    """(trials, frames, units): the kernel at each frame, ``phi_f . k``, applied to its probes."""
    kernel = torch.einsum("fj,jxbn->fxbn", phi, params["kernel"])
    return torch.einsum("tfxb,fxbn->tfn", x, kernel) + phi @ params["offset"]


def _poisson_log_prob(y: np.ndarray, rate: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    rate = np.clip(rate, 1e-12, None)
    return y * np.log(rate) - rate - gammaln(y + 1)


def _bits_per_spike(y: np.ndarray, rate: np.ndarray, mean_rate: np.ndarray) -> np.ndarray:
    """Per unit, bits per spike of a rate (trials, frames, units) against the constant mean rate."""
    base = np.broadcast_to(mean_rate, y.shape)
    return np.array(
        [
            metrics.bits_per_spike(
                _poisson_log_prob(y[..., n], rate[..., n]), _poisson_log_prob(y[..., n], base[..., n]), y[..., n]
            )
            for n in range(y.shape[-1])
        ]
    )


def _glm_side(
    tiers: dict, phi: torch.Tensor, grid_shape: tuple[int, int], spatial: list[float], temporal: list[float], start=None
) -> tuple[np.ndarray, dict]:
    """Fit a GLM over its penalty grid; per unit, the test rate of the setting best on validation."""
    (xt, yt), (xv, yv), (xs, _) = tiers["train"], tiers["validation"], tiers["test"]
    best_ll = np.full(yt.shape[-1], -np.inf)
    best_rate = np.zeros(tuple(xs.shape[:2]) + (yt.shape[-1],))
    chosen: dict[str, list] = {"spatial": [None] * yt.shape[-1], "temporal": [None] * yt.shape[-1]}
    for t_weight in temporal:
        previous = start
        for s_weight in spatial:
            params = fit_probe_glm(xt, yt, phi, grid_shape, s_weight, t_weight, start=previous)
            previous = params
            with torch.no_grad():
                ll = _poisson_log_prob(yv.numpy(), _log_rate(xv, phi, params).exp().numpy()).sum((0, 1))
                rate = _log_rate(xs, phi, params).exp().numpy()
            better = ll > best_ll
            best_ll = np.where(better, ll, best_ll)
            best_rate[..., better] = rate[..., better]
            for n in np.flatnonzero(better):
                chosen["spatial"][n], chosen["temporal"][n] = s_weight, t_weight
    return best_rate, chosen


def run_perisaccadic_comparison(
    session: str = "181024",
    root: Any = None,
    twin_settings: dict | None = None,
    fit_settings: dict | None = None,
    spatial: tuple[float, ...] = (0.03, 0.3, 3.0, 30.0, 300.0),
    temporal: tuple[float, ...] = (0.3, 3.0, 30.0, 300.0),
    spacing: float = 10.0,
    num_samples: int = 100,
    seed: int = 0,
    window_ms: tuple[int, int] = (-1000, 1000),
) -> dict:
    """The gaze twin, a static-RF GLM and a time-varying GLM on one session's units.

    Parameters
    ----------
    session : str
        A date of ``nategh_perisaccadic`` (or a unit).
    twin_settings, fit_settings : dict, optional
        For ``GazeTwin`` and its ``fit`` (defaults: none).
    spatial, temporal : tuple of float
        The GLMs' penalty grids (chosen per unit on validation).
    spacing : float
        Frames between the time-varying GLM's bumps.
    window_ms : (int, int)
        The trials' window around saccade onset (:func:`probtwin.datasets.nategh_perisaccadic`).

    Returns
    -------
    dict
        ``units``; per side (``twin``, ``static_glm``, ``time_varying_glm``) ``<side>_bits``
        (per unit, bits per spike on the test trials) and ``<side>_seconds``; the GLMs'
        ``<side>_penalties``; the twin's ``remapping`` (per unit rho with its 90% interval,
        ``remap_lag_ms``, ``remap_width_ms``), ``saccade`` (posterior mean and 90% interval of
        its vector, grid places), ``post_saccadic_shift`` (lambda_i v per unit, grid places,
        with intervals) and ``epochs``.
    """
    import probtwin as pt

    rec = pt.datasets.nategh_perisaccadic(session, root=root, window_ms=window_ms)
    if rec.stimulus_kind != "videos":
        raise DataError("session", "probe maps as videos", rec.stimulus_kind)
    twin_settings, fit_settings = dict(twin_settings or {}), dict(fit_settings or {})
    out: dict[str, Any] = {"session": session, "units": rec.neuron_ids.tolist()}

    start = time.perf_counter()
    twin = pt.GazeTwin(rec, seed=seed, **twin_settings)
    history = twin.fit(progress=False, **fit_settings)
    test = rec.split("test")
    twin_rate = twin.predict(test, num_samples=num_samples)
    out["twin_seconds"] = time.perf_counter() - start
    out["epochs"] = len(history)

    lags, n_basis = twin.config["temporal_lags"], twin.config["temporal_basis"]
    grid_shape = tuple(rec.stimulus_shape[-2:])
    tiers = {}
    for tier in ("train", "validation", "test"):
        part = rec.split(tier)
        tiers[tier] = (
            lagged_probes(part.stimuli, lags, n_basis),
            torch.as_tensor(np.asarray(part.responses, np.float32)),
        )
    y_test = tiers["test"][1].numpy()
    mean_rate = tiers["train"][1].numpy().mean((0, 1))
    out["twin_bits"] = _bits_per_spike(y_test, twin_rate.mean, mean_rate).tolist()

    frames = rec.n_frames
    start = time.perf_counter()
    static_rate, out["static_glm_penalties"] = _glm_side(tiers, torch.ones(frames, 1), grid_shape, list(spatial), [0.0])
    out["static_glm_seconds"] = time.perf_counter() - start
    out["static_glm_bits"] = _bits_per_spike(y_test, static_rate, mean_rate).tolist()
    start = time.perf_counter()
    varying_rate, out["time_varying_glm_penalties"] = _glm_side(
        tiers, time_basis(frames, spacing), grid_shape, list(spatial), list(temporal)
    )
    out["time_varying_glm_seconds"] = time.perf_counter() - start
    out["time_varying_glm_bits"] = _bits_per_spike(y_test, varying_rate, mean_rate).tolist()

    out.update(_remapping_report(twin, rec))
    return out


def _remapping_report(twin, rec: Recording, bin_ms: float = 10.0) -> dict:
    """The twin's remapping with 90% intervals, in grid places and milliseconds."""
    d = twin.parameter_draws(400)
    table = twin.remapping()
    shift = d["coupling"][..., None] * d["saccade"][:, None, :]  # (draws, units, 2)

    def interval(v: np.ndarray) -> dict:
        return {
            "mean": v.mean(0).tolist(),
            "lower": np.quantile(v, 0.05, 0).tolist(),
            "upper": np.quantile(v, 0.95, 0).tolist(),
        }

    return {
        "remapping": {
            "rho": interval(d["remap"]),
            "discovered": table["discovery"].tolist() if "discovery" in table else None,
            "remap_lag_ms": table.attrs["remap_lag"] * bin_ms,
            "remap_width_ms": table.attrs["remap_width"] * bin_ms,
        },
        "saccade": interval(d["saccade"]),
        "post_saccadic_shift": interval(shift),
        "offset": interval(d["offset"]),
        "size": interval(d["size"]),
    }
