"""GazeTwin: a gaze-conditioned twin of higher visual areas under free viewing, with area-level
receptive-field priors.

For session s, trial t (a scene S_t larger than the visual field, gaze g_tf in scene pixels per
frame f) and neuron i of area a(i):

    core            F = F_theta(S_t)                               once per scene (see below)
    area laws       mu_a ~ Normal(0, 8^2 I), alpha_a ~ Normal(log 2, 1), beta_a ~ Normal(0, 0.2^2)
    offset          o_i ~ StudentT_4(mu_a, Sigma_a)                 eye-centred, pixels from the fovea
    pooling size    log r_i ~ StudentT_4(alpha_a + beta_a (|o_i| - e_a), s_a)  size-eccentricity law
    reference frame lambda_i ~ Normal(1/2, 1/2^2)                   1: eye-centred, 0: scene-centred
    remapping       rho_i ~ Normal(0, tau_rho^2)
    place           p_itf = c + o_i + lambda_i (g_tf - c) + rho_i R(u_tf) v_tf
                    c the scene's centre; u_tf the signed frames from the nearest saccade onset,
                    v_tf its vector (:func:`probtwin.data.saccades.saccade_covariates`);
                    R(u) = exp(-(u - m)^2 / (2 w^2)), m and w learned
    feature weights w_i ~ Normal(0, tau^2 I), bias beta_i ~ Normal(0, 10^2)
    gain field      a_i ~ Normal(0, tau_a^2 I)                      log gain a_i . (g_tf - c) / (size / 4)
    peri-saccadic   s_i ~ Normal(0, tau_s^2 I)                      log gain s_i . B(tau_tf), B Gaussian
                                                                    bumps of the frames since the
                                                                    last onset
    mean            lambda_itf = f(w_i . P_{r_i}(F)[p_itf] + beta_i) exp(log gains)
    response        y_tf ~ noise(lambda_tf)                          per frame

The spread of the neurons around their area's laws is Student-t with 4 degrees of freedom rather
than Normal: a neuron fitted at a wrong place (a weak one whose start was wrong) would otherwise
bend the area's law, as one far point bends a least-squares line. ``e_a`` is a fixed reference
eccentricity per area (the mean eccentricity of the area's starting offsets), so that the law's
level alpha_a and slope beta_a are nearly uncorrelated in the posterior. ``P_r(F)`` is the
feature map pooled by a Gaussian of sd r (:mod:`probtwin.nn.gaze`): the core is
translation-equivariant, so reading the scene's features at ``p_itf`` is reading the retinal
image's features at the eye-centred offset, with the core run once per scene rather than once per
frame. Sigma_a (diagonal) and s_a are point estimates per area (empirical Bayes), as are the core,
tau, tau_a, tau_s, tau_rho, m and w; every per-neuron and per-area site above has a mean-field
Normal posterior. With ``area_prior=False`` the offsets and sizes have fixed broad priors
(Normal(0, 8^2 I) and Normal(log 2, 1)) and no area sites: each neuron on its own.

Areas come from ``Recording.neuron_area`` (one area when it is not given).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from probtwin.data.batching import batch_arrays
from probtwin.data.recording import Recording
from probtwin.data.saccades import saccade_covariates
from probtwin.errors import DataError
from probtwin.nn.energy import gaze_energy_centres
from probtwin.nn.gaze import bumps, pooling_pyramid, read_pooled
from probtwin.twins.gaze_queries import GazeQueries
from probtwin.twins.gaze_readout import GazeReadout
from probtwin.twins.image import ImageTwin
from probtwin.twins.likelihoods import link
from probtwin.twins.video import per_frame

__all__ = ["GazeTwin"]

_NU = 4.0  # degrees of freedom of the area laws' Student-t spread (a mislocated neuron does not bend a law)
_NO_SACCADE = 1e3  # frames: the lag of a frame with no saccade in its trial (every bump is 0 there)


def _areas(rec: Recording) -> np.ndarray:
    """Each neuron's area label; one area "all" without labels; a DataError where some are missing."""
    if rec.neuron_area is None:
        return np.full(rec.n_neurons, "all")
    labels = np.asarray(rec.neuron_area).astype(str)
    missing = np.flatnonzero(np.isin(np.char.strip(np.char.lower(labels)), ["", "nan", "none"]))
    if len(missing):
        raise DataError(
            f"neuron_area of {rec.name!r}",
            "an area label for every neuron (or none at all: one area)",
            f"no label for {len(missing)} of {rec.n_neurons} neurons, e.g. neurons {missing[:5].tolist()}",
        )
    return labels


class GazeTwin(GazeQueries, ImageTwin):
    """A probabilistic twin of a population's responses under free viewing.

    Parameters
    ----------
    recordings : Recording or list of Recording
        Scenes (trials, C, H, W), gaze per frame (trials, frames, 2) in scene pixels (x, y),
        inside the scene, and responses per frame (trials, frames, neurons); areas from
        ``neuron_area``. A recording of one response per trial (trials, neurons) is a
        fixation: each trial one frame, the eye at its gaze (trials, 2) or, without gaze, at
        the image's centre.
    likelihood, noise, latent_rank
        As :class:`~probtwin.twins.image.ImageTwin`, per frame (``noise`` "independent" or a
        flow with a latent state per frame).
    hidden_channels, layers, input_kernel, hidden_kernel : int
        The core's shape (:class:`~probtwin.nn.ConvCore`).
    area_prior : bool
        Hierarchical area-level priors on offsets and sizes (else each neuron on its own).
    pooling_levels, min_pooling : int, float
        The pooling pyramid: sizes ``min_pooling * 2**l`` pixels, l < ``pooling_levels``.
    init_size : float
        Initial pooling size (pixels): wide, so that every neuron starts with a gradient.
    saccade_threshold : float
        Pixels per frame that count as a saccade (:func:`probtwin.data.saccades.saccade_covariates`).
    saccade_basis, basis_spacing : int, float
        Bumps of the peri-saccadic gain: centres 0, spacing, ... frames after onset, width
        ``basis_spacing * 0.75``.
    neuron_area, fixation : list, optional
        Set by the twin from its recordings (each session's area labels; whether it is a
        fixation), kept so that a saved twin is rebuilt without its data.
    **settings
        The other settings of :class:`~probtwin.twins.image.ImageTwin` (weight prior, output
        nonlinearity, laplace weight, posterior, seed, ...).

    Examples
    --------
    >>> sim = pt.simulate.free_viewing(n_neurons=30, n_scenes=40, seed=0)  # doctest: +SKIP
    >>> twin = pt.GazeTwin(sim.recording).fit(max_epochs=5)                # doctest: +SKIP
    """

    fit_defaults: dict = {"max_epochs": 200, "batch_size": 16, "patience": 10}

    def __init__(
        self,
        recordings: Recording | list[Recording] | None,
        likelihood: str | None = None,
        noise: str = "independent",
        *,
        hidden_channels: int = 16,
        layers: int = 3,
        input_kernel: int = 9,
        hidden_kernel: int = 5,
        area_prior: bool = True,
        pooling_levels: int = 6,
        min_pooling: float = 0.5,
        init_size: float = 4.0,
        saccade_threshold: float = 2.0,
        saccade_basis: int = 4,
        basis_spacing: float = 2.0,
        neuron_area: list[list[str]] | None = None,
        fixation: list[bool] | None = None,
        **settings: Any,
    ) -> None:
        if noise not in ("independent", "flow", "zero_inflated_flow"):
            raise DataError("noise", "'independent', 'flow' or 'zero_inflated_flow' (per frame)", repr(noise))
        for name in ("shifter", "state_readout"):
            if settings.get(name):
                raise DataError(name, "not set (gaze places each receptive field itself)", repr(settings[name]))
        settings.update(shifter=False, behavior_in_core=False)
        recs = [recordings] if isinstance(recordings, Recording) else list(recordings or [])
        if neuron_area is None:
            neuron_area = [_areas(r).tolist() for r in recs if isinstance(r, Recording)]
        if not 1 <= pooling_levels <= 12 or min_pooling <= 0:
            raise DataError(
                "pooling_levels, min_pooling", "1 to 12 levels from a positive size", f"{pooling_levels}, {min_pooling}"
            )
        self._gaze = {
            "area_prior": bool(area_prior),
            "pooling_levels": int(pooling_levels),
            "min_pooling": float(min_pooling),
            "init_size": float(init_size),
            "saccade_threshold": float(saccade_threshold),
            "saccade_basis": int(saccade_basis),
            "basis_spacing": float(basis_spacing),
            "neuron_area": neuron_area,
            "fixation": fixation,
        }
        super().__init__(
            recordings,
            likelihood,
            noise,
            hidden_channels=hidden_channels,
            layers=layers,
            input_kernel=input_kernel,
            hidden_kernel=hidden_kernel,
            **settings,
        )

    # ------------------------------------------------------------------ building

    def _check_specs(self) -> None:
        for spec in self.specs:
            if len(spec.stimulus_shape) != 3:
                expected = "scenes (trials, channels, height, width) with responses (trials, frames, neurons)"
                raise DataError(f"stimuli of {spec.name!r}", expected, f"trials of shape {tuple(spec.stimulus_shape)}")
        if self.recordings:
            self._gaze["fixation"] = [rec.n_frames is None for rec in self.recordings]
        for k, rec in enumerate(self.recordings):
            if self._gaze["fixation"][k]:  # one response per trial: a fixation, at the gaze given or the centre
                if rec.gaze is not None:
                    self._check_gaze(k, np.asarray(rec.gaze)[:, None], None)
                continue
            if rec.gaze is None or rec.gaze.ndim != 3:
                found = "None" if rec.gaze is None else f"shape {rec.gaze.shape}"
                raise DataError(f"gaze of {rec.name!r}", "the gaze trace over each scene (trials, frames, 2)", found)
            self._check_gaze(k, np.asarray(rec.gaze), None)

    @property
    def _condition_ndim(self) -> int:  # a query's gaze: a trace (frames, 2) per scene; fixation: (2,)
        return 2 if all(self.config.get("fixation", [False])) else 3

    def _readouts(self, channels: int) -> nn.ModuleList:
        self.config.update(self._gaze)
        areas = self.config["neuron_area"]
        if len(areas) != len(self.specs) or any(len(a) != s.n_neurons for a, s in zip(areas, self.specs, strict=False)):
            raise DataError("neuron_area", "one area label per neuron of every session", f"{[len(a) for a in areas]}")
        return nn.ModuleList(
            GazeReadout(spec, areas[k], channels, self.config, self._bias_init(k)) for k, spec in enumerate(self.specs)
        )

    @torch.no_grad()
    def _init_positions(self) -> None:
        """Start each neuron where its training responses follow local contrast energy best:
        at the best eye-centred offset (coupling 0.9) or, where a fixed place in the scene does
        better, there (coupling 0.1)."""
        for k, rec in enumerate(self.recordings):
            reach = int(max(self.specs[k].stimulus_shape[-2:]) // 4)
            train = rec.split("train")
            size = max(1, 2**21 // int(np.prod(self.specs[k].stimulus_shape)))
            chunks = np.array_split(np.arange(train.n_trials), -(-train.n_trials // size))

            def batches(chunks=chunks, train=train, k=k):
                for i in chunks:
                    a = batch_arrays(train, i)
                    b = self._batch(k, a)
                    y = b["responses"]
                    yield b["stimuli"], b["gaze_px"], y[:, None] if y.dim() == 2 else y

            best = gaze_energy_centres(batches(), reach)
            scene = best["place_correlation"] > best["offset_correlation"]
            offset = torch.where(scene[:, None], best["place"], best["offset"])
            self.readouts[k].start_at(offset, torch.where(scene, 0.1, 0.9))

    def _variational_parameters(self) -> set[str]:
        own = (name for name, _ in self.named_parameters() if name.startswith("readouts."))
        return {name for name in own if name.split(".")[-1].endswith(("_loc", "_scale_unconstrained"))}

    def _elements_per_neuron(self, k: int) -> int:
        frames = max((r.n_frames or 1) for r in self.recordings) if self.recordings else 100
        return self.config["hidden_channels"] * frames

    # ------------------------------------------------------------------ data

    def _batch(self, k: int, arrays: dict, index=None, n_total=None) -> dict:
        arrays = dict(arrays)
        gaze = arrays.pop("gaze", None)  # used in pixels, not standardised
        fixation = self.config["fixation"][k]
        if fixation:  # one frame per trial, at the gaze given or the scene's centre
            n = len(next(v for v in arrays.values() if v is not None))
            gaze = np.tile(self._centre(k), (n, 1, 1)) if gaze is None else np.asarray(gaze)[:, None]
        if gaze is not None:
            responses = arrays.get("responses")
            self._check_gaze(k, np.asarray(gaze), None if fixation or responses is None else responses)
        batch = super()._batch(k, arrays, index, n_total)
        batch["per_frame"] = not fixation
        if gaze is not None:
            covariates = saccade_covariates(gaze, self.config["saccade_threshold"])
            for key in ("lag", "since_onset"):
                values = np.where(np.isfinite(covariates[key]), covariates[key], _NO_SACCADE)
                batch[key] = self._tensor(values)
            batch["saccade_vector"] = self._tensor(covariates["vector"])
            batch["gaze_px"] = self._tensor(gaze)
        return batch

    def _centre(self, k: int) -> np.ndarray:
        """The scene's centre (x, y) in pixels, (2,)."""
        h, w = self.specs[k].stimulus_shape[-2:]
        return np.array([(w - 1) / 2, (h - 1) / 2], np.float32)

    def _check_gaze(self, k: int, gaze: np.ndarray, responses: np.ndarray | None) -> None:
        h, w = self.specs[k].stimulus_shape[-2:]
        if gaze.ndim != 3 or gaze.shape[-1] != 2:
            raise DataError("gaze", "gaze per frame (trials, frames, 2) in scene pixels", f"shape {gaze.shape}")
        if responses is not None and responses.shape[1] != gaze.shape[1]:
            raise DataError("gaze", f"{responses.shape[1]} frames like the responses", f"{gaze.shape[1]} frames")
        outside = (gaze[..., 0] < 0) | (gaze[..., 0] > w - 1) | (gaze[..., 1] < 0) | (gaze[..., 1] > h - 1)
        if outside.any():
            t, f = np.argwhere(outside)[0]
            raise DataError(
                "gaze",
                f"eye positions inside the scene: x in [0, {w - 1}], y in [0, {h - 1}] pixels",
                f"{int(outside.sum())} frames outside, e.g. trial {t} frame {f} at {gaze[t, f].tolist()}",
            )

    def _inputs(self, x: Recording | np.ndarray, session: Any, behavior: Any = None, gaze: Any = None):
        k, stimuli, behavior, gaze = super()._inputs(x, session, behavior, gaze)
        if gaze is None and not self.config["fixation"][k]:
            raise DataError("gaze", "the gaze trace over each scene (trials, frames, 2), scene pixels", "None")
        return k, stimuli, behavior, gaze

    def _check_stimulus_shape(self, k: int, shape: tuple[int, ...]) -> None:
        expected = tuple(self.specs[k].stimulus_shape)
        if tuple(shape) != expected:
            raise DataError(
                "stimuli", f"scenes of shape (n, {', '.join(map(str, expected))})", f"trials of shape {shape}"
            )

    # ------------------------------------------------------------------ the generative story

    def _features(self, batch: dict) -> torch.Tensor:
        """The pooling pyramid of the scene's features (trials, C, levels, H, W), once per batch."""
        key = id(next(self.core.parameters(), None))
        if batch.get("features", (None,))[0] != key:
            c = self.config
            features = self.core(batch["stimuli"]).contiguous()
            batch["features"] = (key, pooling_pyramid(features, c["pooling_levels"], c["min_pooling"]))
        return batch["features"][1]

    def _location(self, batch: dict, **sites: torch.Tensor) -> torch.Tensor:
        """Locations (..., trials, frames, neurons) under the per-neuron ``sites`` (each with an
        optional leading draws dimension)."""
        k = batch["session"]
        r = self.readouts[k]
        drawn = sites["weights"].dim() == 3
        s = {name: (v if drawn else v[None]) for name, v in sites.items()}  # (D, N, ...)
        pyramid = self._features(batch)
        gaze, lag, vector = batch["gaze_px"], batch["lag"], batch["saccade_vector"]  # (T, F, 2), (T, F), (T, F, 2)
        h, w = pyramid.shape[-2:]
        centre = torch.as_tensor(self._centre(k), device=gaze.device)
        profile = torch.exp(-((lag - r.remap_lag) ** 2) / (2 * r.remap_width**2))  # R(u), (T, F)
        # place (D, T, F, N, 2) = c + o + lambda (g - c) + rho R v
        place = (
            centre
            + s["offset"][:, None, None]
            + s["coupling"][:, None, None, :, None] * (gaze - centre)[None, :, :, None]
            + s["remap"][:, None, None, :, None] * (profile[..., None] * vector)[None, :, :, None]
        )
        d, t, f, n = place.shape[:4]
        log2_size = (s["log_size"] / math.log(2))[:, None, None].expand(d, t, f, n)
        feats = read_pooled(
            pyramid,
            place.transpose(0, 1).reshape(t, -1, 2),
            log2_size.transpose(0, 1).reshape(t, -1),
            self.config["min_pooling"],
        ).reshape(t, -1, d, f, n)  # (T, C, D, F, N)
        eta = torch.einsum("tcdfn,dnc->dtfn", feats, s["weights"]) + s["bias"][:, None, None]
        field = (gaze - centre) / (min(h, w) / 4)
        spacing = self.config["basis_spacing"]
        centres = spacing * torch.arange(self.config["saccade_basis"], device=gaze.device, dtype=gaze.dtype)
        basis = bumps(batch["since_onset"], centres, 0.75 * spacing)  # (T, F, K)
        log_gain = torch.einsum("tfk,dnk->dtfn", field, s["gain_field"])
        log_gain = log_gain + torch.einsum("tfk,dnk->dtfn", basis, s["saccadic"])
        if r.modulator is not None:
            behavior = per_frame(batch["behavior"], f)
            log_gain = log_gain + r.modulator.log_gain(behavior.flatten(0, 1)).reshape(t, f, n)
        if self.noise[k].gaussian_space:
            loc = eta + log_gain
        else:
            loc = link(eta, self.config["output"], self.likelihood_name) * torch.exp(log_gain)
        loc = loc[..., 0, :] if self.config["fixation"][k] else loc  # one frame per trial: (trials, neurons)
        return loc if drawn else loc[0]

    def _priors(self, k: int) -> dict:
        """Prior of every site but the offsets and sizes under the area prior (they depend on the
        area sites): ``{site: distribution}``."""
        r = self.readouts[k]
        n, channels = r.weights_loc.shape
        out = {
            "coupling": dist.Normal(torch.full((n,), 0.5, device=r.tau.device), 0.5),
            "weights": dist.Normal(0.0, r.tau).expand([n, channels]).to_event(1),
            "bias": dist.Normal(torch.zeros_like(r.bias_loc), 10.0),
            "gain_field": dist.Normal(0.0, r.tau_gain).expand([n, 2]).to_event(1),
            "saccadic": dist.Normal(0.0, r.tau_saccadic).expand([n, r.saccadic_loc.shape[1]]).to_event(1),
            "remap": dist.Normal(0.0, r.tau_remap).expand([n]),
        }
        if not self.config["area_prior"]:
            out["offset"] = dist.Normal(torch.zeros_like(r.offset_loc), 8.0).to_event(1)
            out["log_size"] = dist.Normal(torch.full_like(r.log_size_loc, math.log(2.0)), 1.0)
        return out

    def model(self, batch: dict) -> None:
        k = batch["session"]
        r = self.readouts[k]
        n = r.weights_loc.shape[0]
        pyro.factor("core_prior", self._core_log_prior(batch))
        values = {}
        if self.config["area_prior"]:
            a = len(r.area_names)
            with pyro.plate(f"areas_{k}", a, dim=-1):
                zero = torch.zeros(a, device=r.tau.device)
                mu = pyro.sample(f"area_offset_{k}", dist.Normal(zero[:, None].expand(a, 2), 8.0).to_event(1))
                alpha = pyro.sample(f"area_alpha_{k}", dist.Normal(zero + math.log(2.0), 1.0))
                beta = pyro.sample(f"area_beta_{k}", dist.Normal(zero, 0.2))
            idx = r.area_index
        with pyro.plate(f"neurons_{k}", n, dim=-1):
            if self.config["area_prior"]:
                spread = dist.StudentT(_NU, mu[..., idx, :], r.offset_sd[idx]).to_event(1)
                offset = pyro.sample(f"offset_{k}", spread)
                size_loc = alpha[..., idx] + beta[..., idx] * (offset.norm(dim=-1) - r.ecc_centre[idx])
                values["log_size"] = pyro.sample(f"log_size_{k}", dist.StudentT(_NU, size_loc, r.size_sd[idx]))
                values["offset"] = offset
            for name, prior in self._priors(k).items():
                values[name] = pyro.sample(f"{name}_{k}", prior)
        loc = self._location(batch, **values)
        self.noise[k].observe(f"responses_{k}", loc, batch)

    def guide(self, batch: dict) -> None:
        k = batch["session"]
        r = self.readouts[k]
        post = r.posterior()
        plates = {"areas": len(r.area_names), "neurons": r.weights_loc.shape[0]}
        for plate, size in plates.items():
            with pyro.plate(f"{plate}_{k}", size, dim=-1):
                for name, (loc, scale) in post.items():
                    if name.startswith("area_") == (plate == "areas"):
                        pyro.sample(f"{name}_{k}", dist.Normal(loc, scale).to_event(r.sites[name][3]))
        means = {name: loc for name, (loc, _) in post.items() if not name.startswith("area_")}
        self.noise[k].guide(f"responses_{k}", batch, lambda: self._location(batch, **means))

    site_dims = {
        "offset": ("neuron", "xy"),
        "weights": ("neuron", "channel"),
        "gain_field": ("neuron", "xy"),
        "saccadic": ("neuron", "basis"),
        "area_offset": ("area", "xy"),
        "area_alpha": ("area",),
        "area_beta": ("area",),
    }
