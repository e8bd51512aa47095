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

Scenes that change with the frames (videos (trials, C, frames, H, W), e.g. probes flashed on a
grid) run the core once per frame, and each neuron sums its reads over the lags of a causal
temporal kernel ``k_i(l) = sum_b kappa_ib phi_b(l)`` (``phi_b`` Gaussian bumps of peak 1 over
``temporal_lags`` frames, kappa_i ~ Normal(0, tau_k^2 I) a site):

    drive           eta_itf = sum_l k_i(l) w_i . P_{r_i}(F_{t,f-l})[p_{i,t,f-l}] + beta_i

There F = [S, F_theta(S)] by default (``stimulus_pathway``): the frame itself is a channel beside
the core's features, so that a readout holds a Gaussian-pooled linear field of the probes even
where a core learned from a few units' responses has not learned the probe.

Without a gaze trace but with the frame of each trial's saccade onset
(``trial_info["saccade_onset"]``, the same for every trial; probes around a saccade to a fixed
target), the eye is at the scene's centre before the onset and at ``c + v`` after it, the
saccade vector v ~ Normal(0, (size / 2)^2 I) a site of the session; the peri-saccadic bumps and
R(u) then run over the signed frames from the onset, u < 0 before it.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.nn.gaze import bumps, causal_filter, pooling_pyramid, read_gaussian, read_pooled, sum_over_lags
from probtwin.twins.gaze_data import GazeData, areas_of
from probtwin.twins.gaze_queries import GazeQueries
from probtwin.twins.gaze_readout import GazeReadout, kernel_basis
from probtwin.twins.image import ImageTwin
from probtwin.twins.likelihoods import link
from probtwin.twins.noise import per_frame

__all__ = ["GazeTwin"]

_NU = 4.0  # degrees of freedom of the area laws' Student-t spread (a mislocated neuron does not bend a law)


class GazeTwin(GazeQueries, GazeData, ImageTwin):
    """A probabilistic twin of a population's responses under free viewing.

    Parameters
    ----------
    recordings : Recording or list of Recording
        Scenes (trials, C, H, W), gaze per frame (trials, frames, 2) in scene pixels (x, y),
        inside the scene, and responses per frame (trials, frames, neurons); areas from
        ``neuron_area``. A recording of one response per trial (trials, neurons) is a
        fixation: each trial one frame, the eye at its gaze (trials, 2) or, without gaze, at
        the image's centre. Scenes per frame, videos (trials, C, frames, H, W), with gaze per
        frame or, without it, ``trial_info["saccade_onset"]`` (the frame of one saccade to a
        fixed target, its vector learned).
    likelihood, noise
        As :class:`~probtwin.twins.image.ImageTwin`, per frame (``noise`` "independent" or a
        flow with a latent state per frame).
    hidden_channels, layers, input_kernel, hidden_kernel : int
        The core's shape (:class:`~probtwin.nn.ConvCore`).
    stimulus_pathway : bool, optional
        The stimulus's own channels beside the core's features (``ConvCore(pass_input=True)``),
        so that a readout can hold a linear field, pooled by its Gaussian, that the core has not
        learned: a weak unit's probe field, which a core learned from a few units' responses
        leaves out. None: on for scenes per frame (probe maps), off for scenes with a gaze
        trace.
    area_prior : bool
        Hierarchical area-level priors on offsets and sizes (else each neuron on its own).
    pooling_levels, min_pooling : int, float
        The pooling pyramid: sizes ``min_pooling * 2**l`` pixels, l < ``pooling_levels``.
    pooling_blend : {"variance", "log"}
        Scenes with a gaze trace: how a size between two levels of the pyramid is read
        (:func:`~probtwin.nn.gaze.read_pooled`). ``"variance"``: the pooling's variance is the
        size's square at every size, so that r_i is the pooling's sd; ``"log"`` (twins saved
        before): linear in log size, up to 12% wider between levels.
    init_size : float, optional
        Initial pooling size (pixels). None: on scenes with a gaze trace 4 pixels, wide, so
        that every neuron starts with a gradient; on a map per frame (probe grids) the scale,
        of 1, 2 and 4 pixels up to a quarter of the map, at which the responses follow the
        local contrast energy or the blurred frames best
        (:func:`probtwin.nn.energy.energy_rf_start`), so that a field of
        one grid place on a 9 x 9 grid does not start four places wide (with
        ``position_init='uniform'``, 4 pixels there too).
    saccade_threshold : float
        Pixels per frame that count as a saccade (:func:`probtwin.data.saccades.saccade_covariates`).
    saccade_basis, basis_spacing, basis_start : int, float, float, optional
        Bumps of the peri-saccadic gain: centres ``basis_start + k * basis_spacing`` frames from
        onset, k < ``saccade_basis``, width ``basis_spacing * 0.75``. Defaults: 4 bumps from 0
        every 2 frames with gaze traces; 10 from -12 every 4 frames with a saccade onset and no
        trace (-120 to +240 ms in 10 ms bins).
    temporal_lags, temporal_basis : int
        Scenes per frame: the temporal kernel's length in frames (lags 0 .. ``temporal_lags - 1``)
        and its number of bumps.
    temporal_rank : int or None
        Scenes per frame: pairs of feature weights and temporal kernels per neuron (1: a
        separable space-time field). None: a free weight per channel and temporal bump, a site
        (neurons, temporal_basis, channels) and no ``temporal`` site (a field of any rank in
        the core's channels, linear in its parameters).
    temporal_norm : {"peak", "sum"}
        Scenes per frame: the scale of the temporal kernel's bumps. ``"peak"``: each bump peaks
        at 1, so that a probe of one frame can drive a neuron as much as a held scene (the
        kernel starts flat, summing to 1 over the lags); ``"sum"``: the bumps scaled so that
        kappa = 1 sums to 1 over the lags, which makes a transient response ``1 / lags`` of
        the drive and held the fields of weak units near 0 (twins saved before 2026-12-06).
    neuron_area, fixation, saccade_onset : list, optional
        Set by the twin from its recordings (each session's area labels; whether it is a
        fixation; the frame of the saccade's onset where there is no gaze trace), kept so that
        a saved twin is rebuilt without its data.
    **settings
        The other settings of :class:`~probtwin.twins.image.ImageTwin` (``latent_rank``, weight
        prior, output nonlinearity, laplace weight, posterior, seed, ...).

    Examples
    --------
    >>> sim = pt.simulate.free_viewing(n_neurons=30, n_scenes=40, seed=0)  # doctest: +SKIP
    >>> twin = pt.GazeTwin(sim.recording).fit(max_epochs=5)                # doctest: +SKIP
    """

    @property
    def fit_defaults(self) -> dict:  # type: ignore[override]
        """200 epochs, 16 trials a step, patience 10; scenes per frame (hundreds of frames a
        trial, a weak signal in each) learn at 0.01 rather than 0.005, so that a weak unit's
        fit is not stopped by a noisy validation score before it has learned its field."""
        lr = 0.01 if self._per_frame_scenes else 5e-3
        return {"max_epochs": 200, "batch_size": 16, "patience": 10, "lr": lr}

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
        stimulus_pathway: bool | None = None,
        area_prior: bool = True,
        pooling_levels: int = 6,
        min_pooling: float = 0.5,
        pooling_blend: str = "variance",
        init_size: float | None = None,
        saccade_threshold: float = 2.0,
        saccade_basis: int | None = None,
        basis_spacing: float | None = None,
        basis_start: float | None = None,
        temporal_lags: int = 20,
        temporal_basis: int = 5,
        temporal_rank: int | None = 2,
        temporal_norm: str = "peak",
        neuron_area: list[list[str]] | None = None,
        fixation: list[bool] | None = None,
        saccade_onset: list[float | None] | None = None,
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
            neuron_area = [areas_of(r).tolist() for r in recs if isinstance(r, Recording)]
        if int(temporal_lags) < 1 or int(temporal_basis) < 1 or (temporal_rank is not None and int(temporal_rank) < 1):
            raise DataError(
                "temporal_lags, temporal_basis, temporal_rank",
                "positive integers",
                f"{temporal_lags}, {temporal_basis}, {temporal_rank}",
            )
        if temporal_norm not in ("peak", "sum"):
            raise DataError("temporal_norm", "'peak' or 'sum'", repr(temporal_norm))
        if init_size is not None and not init_size > 0:
            raise DataError("init_size", "a positive size in pixels, or None (from the data)", repr(init_size))
        if not 1 <= pooling_levels <= 12 or min_pooling <= 0:
            raise DataError(
                "pooling_levels, min_pooling", "1 to 12 levels from a positive size", f"{pooling_levels}, {min_pooling}"
            )
        if pooling_blend not in ("variance", "log"):
            raise DataError("pooling_blend", "'variance' or 'log'", repr(pooling_blend))
        if stimulus_pathway and settings.get("core") is not None:
            raise DataError("stimulus_pathway", "None or False with a custom core (its own channels)", "True")
        self._gaze = {
            "stimulus_pathway": None if stimulus_pathway is None else bool(stimulus_pathway),
            "area_prior": bool(area_prior),
            "pooling_levels": int(pooling_levels),
            "min_pooling": float(min_pooling),
            "pooling_blend": pooling_blend,
            "init_size": None if init_size is None else float(init_size),
            "saccade_threshold": float(saccade_threshold),
            "saccade_basis": saccade_basis,
            "basis_spacing": basis_spacing,
            "basis_start": basis_start,
            "temporal_lags": int(temporal_lags),
            "temporal_basis": int(temporal_basis),
            "temporal_rank": None if temporal_rank is None else int(temporal_rank),
            "temporal_norm": temporal_norm,
            "neuron_area": neuron_area,
            "fixation": fixation,
            "saccade_onset": saccade_onset,
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

    # settings that twins saved before they existed had: one pair, bumps summing to 1, the core's
    # features alone, sizes between levels read linearly in log size
    #: A gaze twin's ensemble is not yet measured against its targets: the readout posterior.
    default_posterior = "readout"

    _saved_before = {"temporal_rank": 1, "temporal_norm": "sum", "stimulus_pathway": False, "pooling_blend": "log"}

    # ------------------------------------------------------------------ building

    @property
    def _condition_ndim(self) -> int:  # a query's gaze: a trace (frames, 2) per scene; fixation: (2,)
        return 2 if all(self.config.get("fixation", [False])) else 3

    def _build(self, in_channels: int, core: nn.Module | None) -> None:
        if self._gaze["stimulus_pathway"] is None:  # on for the default core on scenes per frame
            self._gaze["stimulus_pathway"] = core is None and self._per_frame_scenes
        super()._build(in_channels, core)

    def _default_core(self, in_channels: int) -> nn.Module:
        return super()._default_core(in_channels, pass_input=self._gaze["stimulus_pathway"])

    def _readouts(self, channels: int) -> nn.ModuleList:
        self.config.update(self._gaze)
        areas = self.config["neuron_area"]
        if len(areas) != len(self.specs) or any(len(a) != s.n_neurons for a, s in zip(areas, self.specs, strict=False)):
            raise DataError("neuron_area", "one area label per neuron of every session", f"{[len(a) for a in areas]}")
        return nn.ModuleList(
            GazeReadout(
                spec,
                areas[k],
                channels,
                self.config,
                self._bias_init(k),
                self._per_frame_scenes,
                self._saccade_onset(k),
            )
            for k, spec in enumerate(self.specs)
        )

    @property
    def _per_frame_scenes(self) -> bool:
        return len(self.specs[0].stimulus_shape) == 4

    def _variational_parameters(self) -> set[str]:
        own = (name for name, _ in self.named_parameters() if name.startswith("readouts."))
        return {name for name in own if name.split(".")[-1].endswith(("_loc", "_scale_unconstrained"))}

    def _elements_per_neuron(self, k: int) -> int:
        frames = max((r.n_frames or 1) for r in self.recordings) if self.recordings else 100
        return self.core.out_channels * frames

    # ------------------------------------------------------------------ the generative story

    def _features(self, batch: dict) -> torch.Tensor:
        """The pooling pyramid of the scene's features (trials, C, levels, H, W), once per batch;
        scenes per frame: their features (trials * frames, C, H, W), read directly."""
        key = id(next(self.core.parameters(), None))
        if batch.get("features", (None,))[0] != key:
            c = self.config
            stimuli = batch["stimuli"]
            if stimuli.dim() == 5:  # (T, C, F, H, W) -> (T * F, C, H, W)
                stimuli = stimuli.transpose(1, 2).flatten(0, 1)
            features = self.core(stimuli).contiguous()
            if stimuli is batch["stimuli"]:
                features = pooling_pyramid(features, c["pooling_levels"], c["min_pooling"])
            batch["features"] = (key, features)
        return batch["features"][1]

    def _location(self, batch: dict, **sites: torch.Tensor) -> torch.Tensor:
        """Locations (..., trials, frames, neurons) under the per-neuron ``sites`` (each with an
        optional leading draws dimension)."""
        k = batch["session"]
        r = self.readouts[k]
        drawn = sites["bias"].dim() == 2
        s = {name: (v if drawn else v[None]) for name, v in sites.items()}  # (D, N, ...)
        pyramid = self._features(batch)  # scenes per frame: each frame's feature map
        lag = batch["lag"]  # (T, F)
        t, f = lag.shape
        h, w = pyramid.shape[-2:]
        centre = torch.as_tensor(self._centre(k), device=lag.device)
        if "after_onset" in batch:  # no gaze trace: at the centre, then at centre + v (v a site)
            v = s["saccade"].reshape(-1, 1, 1, 2)  # (D, 1, 1, 2)
            gaze = centre + batch["after_onset"][None, ..., None] * v  # (D, T, F, 2)
            vector = v.expand_as(gaze)
        else:
            gaze, vector = batch["gaze_px"][None], batch["saccade_vector"][None]  # (1, T, F, 2)
        profile = torch.exp(-((lag - r.remap_lag) ** 2) / (2 * r.remap_width**2))  # R(u), (T, F)
        # place (D, T, F, N, 2) = c + o + lambda (g - c) + rho R v
        place = (
            centre
            + s["offset"][:, None, None]
            + s["coupling"][:, None, None, :, None] * (gaze - centre)[:, :, :, None]
            + s["remap"][:, None, None, :, None] * (profile[..., None] * vector)[:, :, :, None]
        )
        d, n = place.shape[0], place.shape[3]
        log2_size = (s["log_size"] / math.log(2))[:, None, None].expand(d, t, f, n)
        if self._per_frame_scenes:  # each frame's own map, read directly at (D * N) places
            feats = (
                read_gaussian(
                    pyramid,
                    place.permute(1, 2, 0, 3, 4).reshape(t * f, d * n, 2),
                    log2_size.permute(1, 2, 0, 3).reshape(t * f, d * n),
                    self.config["min_pooling"],
                    self.config["pooling_levels"],
                )
                .reshape(t, f, -1, d, n)
                .permute(0, 2, 3, 1, 4)
            )  # (T, C, D, F, N)
            if "temporal" in s:  # R pairs: each pair's read filtered by its own kernel
                rank = s["weights"].shape[-2]
                drive = torch.einsum("tcdfn,dnrc->tdnrf", feats, s["weights"]).reshape(t, d * n * rank, f)
                drive = causal_filter(drive, self._temporal_kernel(s).reshape(d * n * rank, -1))
                eta = drive.reshape(t, d, n, rank, f).sum(3).permute(1, 0, 3, 2)
            else:  # a free weight per channel and bump: the reads weighted per bump, then filtered by it
                drive = torch.einsum("tcdfn,dnbc->dtfnb", feats, s["weights"])  # per bump
                eta = sum_over_lags(drive, kernel_basis(self.config))  # (D, T, F, N)
            eta = eta + s["bias"][:, None, None]
        else:
            feats = read_pooled(
                pyramid,
                place.transpose(0, 1).reshape(t, -1, 2),
                log2_size.transpose(0, 1).reshape(t, -1),
                self.config["min_pooling"],
                self.config["pooling_blend"],
            ).reshape(t, -1, d, f, n)  # (T, C, D, F, N)
            eta = torch.einsum("tcdfn,dnc->dtfn", feats, s["weights"]) + s["bias"][:, None, None]
        gaze = gaze.expand(d, t, f, 2)
        field = (gaze - centre) / (min(h, w) / 4)  # (D, T, F, 2)
        c = self.config
        centres = c["basis_start"] + c["basis_spacing"] * torch.arange(c["saccade_basis"], device=gaze.device)
        basis = bumps(batch["since_onset"], centres.to(gaze.dtype), 0.75 * c["basis_spacing"])  # (T, F, K)
        log_gain = torch.einsum("dtfk,dnk->dtfn", field, s["gain_field"])
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

    def _temporal_kernel(self, sites: dict) -> torch.Tensor:
        """Each neuron's temporal kernels k_ir(l) = sum_b kappa_irb phi_b(l), (D, N, R, lags),
        with the bumps phi of ``temporal_norm``."""
        return sites["temporal"] @ kernel_basis(self.config).to(sites["temporal"])

    def _priors(self, k: int) -> dict:
        """Prior of every site but the offsets and sizes under the area prior (they depend on the
        area sites): ``{site: distribution}``."""
        r = self.readouts[k]
        n = r.bias_loc.shape[0]
        shape = r.sites["weights"][0]
        out = {
            "coupling": dist.Normal(torch.full((n,), 0.5, device=r.tau.device), 0.5),
            "weights": dist.Normal(0.0, r.tau).expand(list(shape)).to_event(len(shape) - 1),
            "bias": dist.Normal(torch.zeros_like(r.bias_loc), 10.0),
            "gain_field": dist.Normal(0.0, r.tau_gain).expand([n, 2]).to_event(1),
            "saccadic": dist.Normal(0.0, r.tau_saccadic).expand([n, r.saccadic_loc.shape[1]]).to_event(1),
            "remap": dist.Normal(0.0, r.tau_remap).expand([n]),
        }
        if "temporal" in r.sites:
            out["temporal"] = dist.Normal(0.0, r.tau_temporal).expand(list(r.temporal_loc.shape)).to_event(2)
        if not self.config["area_prior"]:
            out["offset"] = dist.Normal(torch.zeros_like(r.offset_loc), 8.0).to_event(1)
            out["log_size"] = dist.Normal(torch.full_like(r.log_size_loc, math.log(2.0)), 1.0)
        return out

    def model(self, batch: dict) -> None:
        k = batch["session"]
        r = self.readouts[k]
        n = r.bias_loc.shape[0]
        pyro.factor("core_prior", self._core_log_prior(batch))
        values = {}
        if "saccade" in r.sites:  # no gaze trace: the saccade's vector, one per session
            prior = dist.Normal(torch.zeros_like(r.saccade_loc), r.pixels).to_event(1)
            values["saccade"] = pyro.sample(f"saccade_{k}", prior)
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
        for name, (loc, scale) in post.items():  # the session's own sites
            if r.plate(name) is None:
                pyro.sample(f"{name}_{k}", dist.Normal(loc, scale).to_event(r.sites[name][3]))
        plates = {"areas": len(r.area_names), "neurons": r.bias_loc.shape[0]}
        for plate, size in plates.items():
            with pyro.plate(f"{plate}_{k}", size, dim=-1):
                for name, (loc, scale) in post.items():
                    if r.plate(name) == plate:
                        pyro.sample(f"{name}_{k}", dist.Normal(loc, scale).to_event(r.sites[name][3]))
        means = {name: loc for name, (loc, _) in post.items() if r.plate(name) != "areas"}
        self.noise[k].guide(f"responses_{k}", batch, lambda: self._location(batch, **means))

    @property
    def site_dims(self) -> dict[str, tuple[str, ...]]:  # type: ignore[override]
        """Names of each posterior site's dimensions (scenes per frame: weights and temporal
        kernels in ``temporal_rank`` pairs)."""
        weights = ("neuron", "channel")
        if self._per_frame_scenes:  # pairs, or a weight per temporal bump (temporal_rank=None)
            weights = ("neuron", "rank" if self.config["temporal_rank"] else "temporal_basis", "channel")
        return {
            "offset": ("neuron", "xy"),
            "weights": weights,
            "gain_field": ("neuron", "xy"),
            "saccadic": ("neuron", "basis"),
            "temporal": ("neuron", "rank", "temporal_basis"),
            "saccade": ("xy",),
            "area_offset": ("area", "xy"),
            "area_alpha": ("area",),
            "area_beta": ("area",),
        }
