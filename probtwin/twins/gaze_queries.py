"""Queries of a fitted gaze twin's parameters: posterior draws of every site, and the hypothesis
tests of free viewing (eye- against scene-centred fields, remapping, the areas'
size-eccentricity laws), false discoveries controlled."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from probtwin.errors import DataError
from probtwin.hypothesis import expected_fdr_discoveries, test

__all__ = ["GazeQueries"]


class GazeQueries:
    """Mixin of :class:`~probtwin.twins.gaze.GazeTwin`: its readouts are
    :class:`~probtwin.twins.gaze_readout.GazeReadout`."""

    # ------------------------------------------------------------------ posterior of the parameters

    @torch.no_grad()
    def parameter_draws(self, num_samples: int = 200, seed: int = 0, session: Any = None) -> dict[str, np.ndarray]:
        """Posterior draws of every per-neuron and per-area site.

        Returns
        -------
        dict of str to numpy.ndarray
            ``offset`` (draws, neurons, 2) pixels, ``size`` (draws, neurons) pixels (``exp`` of
            ``log_size``), ``coupling``, ``remap``, ``gain_field`` (draws, neurons, 2),
            ``saccadic`` (draws, neurons, basis), ``weights``, ``bias``; scenes per frame
            ``temporal`` (draws, neurons, basis); a saccade onset without gaze ``saccade``
            (draws, 2) pixels; with the area prior
            ``area_offset`` (draws, areas, 2), ``area_alpha``, ``area_beta`` (draws, areas).
        """
        k = self.session_index(session)
        draws = self._posterior_draws(k, num_samples, seed)
        traces = draws if isinstance(draws, list) else [draws]
        out = {}
        for name in self.readouts[k].sites:
            parts = [t.nodes[f"{name}_{k}"]["value"] for t in traces if t is not None]
            out[name] = torch.cat(parts).reshape(-1, *self.readouts[k].sites[name][0]).cpu().numpy()
        out["size"] = np.exp(out["log_size"])
        return out

    def probe_sensitivity(
        self,
        times: Any,
        window: int | None = None,
        amplitude: float = 1.0,
        level: float = 0.9,
        num_samples: int = 50,
        seed: int = 0,
        session: Any = None,
    ) -> dict[str, np.ndarray]:
        """The receptive field at each time of a trial, probed in silico: one frame's probe at
        every place of the scene (the twin of scenes per frame), its predicted response summed
        over the ``window`` frames from the probe on, minus the response to the blank scene,
        per posterior draw.

        Parameters
        ----------
        times : array-like of int
            Frames of the trial at which the probe is shown (around a saccade onset: ``onset +
            u`` for u frames from the onset).
        window : int, optional
            Frames summed from the probe's frame on (default ``temporal_lags``).
        amplitude : float
            The probe's value (every channel; the blank is 0).
        level : float
            Central interval of the posterior.

        Returns
        -------
        dict of str to numpy.ndarray
            ``mean``, ``lower``, ``upper``: (times, H, W, neurons), spikes (response units) per
            probe; ``times``.
        """
        k = self.session_index(session)
        shape = tuple(self.specs[k].stimulus_shape)
        if len(shape) != 4:
            raise DataError("stimuli", "a twin of scenes per frame (trials, C, frames, H, W)", f"scenes {shape}")
        if not 0 < level < 1:
            raise DataError("level", "a probability in (0, 1)", repr(level))
        c, frames, h, w = shape
        times = np.atleast_1d(np.asarray(times))
        if times.dtype.kind not in "iu" or times.min() < 0 or times.max() >= frames:
            raise DataError("times", f"frames of the trial, integers in [0, {frames})", repr(times.tolist()))
        window = int(window or self.config["temporal_lags"])
        n = len(times) * h * w
        stimuli = np.zeros((1 + n, c, frames, h, w), np.float32)
        which, row, col = np.unravel_index(np.arange(n), (len(times), h, w))
        stimuli[1 + np.arange(n), :, times[which], row, col] = amplitude
        draws = self.predict(stimuli, num_samples=num_samples, seed=seed, session=k).samples  # (D, 1 + n, F, N)
        evoked = draws[:, 1:] - draws[:, :1]
        span = np.arange(frames)[None, :]
        inside = (span >= times[which][:, None]) & (span < times[which][:, None] + window)  # (n, F)
        summed = np.einsum("dnfk,nf->dnk", evoked, inside.astype(evoked.dtype))
        summed = summed.reshape(len(draws), len(times), h, w, -1)
        tail = (1 - level) / 2
        return {
            "mean": summed.mean(0),
            "lower": np.quantile(summed, tail, axis=0),
            "upper": np.quantile(summed, 1 - tail, axis=0),
            "times": times,
        }

    def areas(self, session: Any = None) -> list[str]:
        """The area names of a session, in the order of the area sites."""
        return list(self.readouts[self.session_index(session)].area_names)

    # ------------------------------------------------------------------ hypothesis tests

    def reference_frames(
        self, alpha: float = 0.1, num_samples: int = 400, seed: int = 0, session: Any = None
    ) -> pd.DataFrame:
        """Per neuron: eye-centred or scene-centred receptive field, from the posterior of the
        coupling lambda_i (1: the field moves with the eye; 0: it stays on the scene).

        A neuron is declared scene-centred when ``P(lambda_i < 1/2)`` is high and eye-centred
        when ``P(lambda_i > 1/2)`` is, each set as large as keeps its posterior expected false
        discovery rate at most ``alpha`` (:func:`probtwin.hypothesis.expected_fdr_discoveries`).

        Returns
        -------
        pandas.DataFrame indexed by neuron id
            ``area``, ``coupling`` (posterior mean), ``lower``, ``upper`` (90% interval),
            ``p_scene_centred``, ``scene_centred`` and ``eye_centred`` (the discoveries).
        """
        k = self.session_index(session)
        coupling = self.parameter_draws(num_samples, seed, k)["coupling"]
        p_scene = ((coupling < 0.5).sum(0) + 0.5) / (len(coupling) + 1)
        return pd.DataFrame(
            {
                "area": self.config["neuron_area"][k],
                "coupling": coupling.mean(0),
                "lower": np.quantile(coupling, 0.05, axis=0),
                "upper": np.quantile(coupling, 0.95, axis=0),
                "p_scene_centred": p_scene,
                "scene_centred": expected_fdr_discoveries(1 - p_scene, alpha),
                "eye_centred": expected_fdr_discoveries(p_scene, alpha),
            },
            index=pd.Index(self.specs[k].neuron_ids, name="neuron"),
        )

    def remapping(
        self, delta: float = 0.1, alpha: float = 0.1, num_samples: int = 400, seed: int = 0, session: Any = None
    ) -> pd.DataFrame:
        """Per neuron: whether its receptive field moves along the saccade around its onset,
        from the posterior of rho_i (the fraction of the saccade vector it moves at the peak of
        R): :func:`probtwin.hypothesis.test` with ``|rho_i| > delta`` as the effect that
        matters, discoveries at a posterior expected FDR of ``alpha``; ``attrs`` hold the
        learned profile's peak ``remap_lag`` and ``remap_width`` (frames from onset)."""
        k = self.session_index(session)
        table = test(self.parameter_draws(num_samples, seed, k)["remap"], delta, alpha, 0.9, self.specs[k].neuron_ids)
        r = self.readouts[k]
        table.attrs.update(remap_lag=float(r.remap_lag.detach()), remap_width=float(r.remap_width.detach()))
        return table

    def size_eccentricity(self, level: float = 0.9, num_samples: int = 2000, seed: int = 0, session: Any = None):
        """Per area, the size-eccentricity law ``log r = alpha_a + beta_a |o|`` with central
        ``level`` intervals of its posterior.

        Returns
        -------
        pandas.DataFrame indexed by area
            ``slope`` (beta_a, per pixel of eccentricity), ``slope_lower``, ``slope_upper``,
            ``intercept`` (the log size at eccentricity 0, ``alpha_a - beta_a e_a``),
            ``intercept_lower``, ``intercept_upper``, ``reference_eccentricity`` (e_a), ``neurons``.
        """
        if not self.config["area_prior"]:
            raise DataError("area_prior", "True (the area laws are sites of the hierarchical prior)", "False")
        if not 0 < level < 1:
            raise DataError("level", "a probability in (0, 1)", repr(level))
        k = self.session_index(session)
        d = self.parameter_draws(num_samples, seed, k)
        tail = (1 - level) / 2
        centre = self.readouts[k].ecc_centre.cpu().numpy()
        draws = {"slope": d["area_beta"], "intercept": d["area_alpha"] - d["area_beta"] * centre}
        out = {}
        for key, values in draws.items():
            out[key] = values.mean(0)
            out[f"{key}_lower"] = np.quantile(values, tail, axis=0)
            out[f"{key}_upper"] = np.quantile(values, 1 - tail, axis=0)
        out["reference_eccentricity"] = centre
        areas = self.readouts[k].area_names
        out["neurons"] = np.bincount(self.readouts[k].area_index.cpu().numpy(), minlength=len(areas))
        return pd.DataFrame(out, index=pd.Index(areas, name="area"))
