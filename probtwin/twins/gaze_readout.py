"""The gaze twin's per-neuron and per-area variational parameters and prior scales."""

from __future__ import annotations

import math

import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam
from torch import nn

from probtwin.data.registry import SessionSpec
from probtwin.nn import Modulator
from probtwin.nn.gaze import lag_basis

__all__ = ["GazeReadout", "kernel_basis"]

_POSITIVE = constraints.softplus_positive
#: The starting pooling size (pixels) on scenes with a gaze trace, where ``init_size`` is None:
#: wide, so that every neuron starts with a gradient.
_SCENE_SIZE = 4.0


def kernel_basis(config: dict) -> torch.Tensor:
    """The bumps phi of the temporal kernels k(l) = sum_b kappa_b phi_b(l) over the lags, of peak 1
    (``temporal_norm="peak"``) or scaled to sum to 1 over all bumps and lags (``"sum"``).

    Returns
    -------
    torch.Tensor, shape (temporal_basis, temporal_lags)
    """
    phi = lag_basis(config["temporal_lags"], config["temporal_basis"])
    return phi / phi.sum() if config["temporal_norm"] == "sum" else phi


class GazeReadout(PyroModule):
    """One session's per-neuron and per-area variational parameters and prior scales.

    Parameters
    ----------
    spec : SessionSpec
    areas : list of str
        The area label of each neuron.
    channels : int
    config : dict
        The gaze twin's settings.
    bias_init : torch.Tensor, shape (neurons,)
    """

    def __init__(
        self,
        spec: SessionSpec,
        areas: list[str],
        channels: int,
        config: dict,
        bias_init: torch.Tensor,
        per_frame_scenes: bool = False,
        saccade_onset: float | None = None,
    ):
        super().__init__()
        n = spec.n_neurons
        self.area_names = sorted(set(areas))
        self.register_buffer("area_index", torch.as_tensor([self.area_names.index(a) for a in areas]))
        n_areas = len(self.area_names)
        small = config["init_scale"] * 0.1
        self.sites = {  # name: (shape, initial mean, initial posterior sd, event dims)
            "offset": ((n, 2), 0.0, 0.5, 1),
            "log_size": ((n,), math.log(config["init_size"] or _SCENE_SIZE), 0.05, 0),
            "coupling": ((n,), 0.75, 0.05, 0),
            "weights": ((n, channels), None, small, 1),
            "bias": ((n,), None, small, 0),
            "gain_field": ((n, 2), 0.0, small, 1),
            "saccadic": ((n, config["saccade_basis"]), 0.0, small, 1),
            "remap": ((n,), 0.0, small, 0),
        }
        rank = config["temporal_rank"]
        if per_frame_scenes and rank is None:  # a free weight per temporal bump and channel
            self.sites["weights"] = ((n, config["temporal_basis"], channels), None, small, 2)
        elif per_frame_scenes:  # R pairs of feature weights and temporal kernels over the frames' lags
            self.sites["weights"] = ((n, rank, channels), None, small, 2)
            self.sites["temporal"] = ((n, rank, config["temporal_basis"]), None, small, 2)
        if config["area_prior"]:
            self.sites.update(
                {
                    "area_offset": ((n_areas, 2), 0.0, 0.1, 1),
                    "area_alpha": ((n_areas,), math.log(config["init_size"] or _SCENE_SIZE), 0.05, 0),
                    "area_beta": ((n_areas,), 0.0, 0.01, 0),
                }
            )
            self.offset_sd = PyroParam(torch.full((n_areas, 2), 3.0), constraint=constraints.positive)
            self.size_sd = PyroParam(torch.full((n_areas,), 0.3), constraint=constraints.positive)
        if saccade_onset is not None:  # no gaze trace: the saccade's vector (pixels) is a site of the session
            self.sites["saccade"] = ((2,), 0.0, 0.1, 1)
        # pixel-valued means are stored in half-scenes (as the image twin's grid units), so that an
        # optimiser step moves them as far in the scene as it moves a grid position
        self.pixels = float(min(spec.stimulus_shape[-2:])) / 2
        self.units = {"offset": self.pixels, "area_offset": self.pixels, "saccade": self.pixels}
        self.register_buffer("ecc_centre", torch.zeros(n_areas))  # e_a: the size law's reference eccentricity
        for name, (shape, mean, sd, _) in self.sites.items():
            if name == "weights":
                loc = torch.randn(shape) * 0.01
            elif name == "bias":
                loc = bias_init.clone()
            elif name == "temporal":  # a flat kernel summing to 1 over the lags, then biphasic ones
                loc = torch.ones(shape)  # (early against late), so that the pairs start apart
                loc[:, 1:] = torch.linspace(1.0, -1.0, shape[-1])
                loc = loc / kernel_basis(config).sum()
            else:
                loc = torch.full(shape, float(mean) / self.units.get(name, 1.0))
            setattr(self, f"{name}_loc", nn.Parameter(loc))
            setattr(self, f"{name}_scale", PyroParam(torch.full(shape, float(sd)), constraint=_POSITIVE))
        self.tau = PyroParam(torch.tensor(float(config["weight_prior_scale"])), constraint=constraints.positive)
        for name in ("tau_gain", "tau_saccadic", "tau_remap"):
            setattr(self, name, PyroParam(torch.tensor(0.3), constraint=constraints.positive))
        if "temporal" in self.sites:
            self.tau_temporal = PyroParam(torch.tensor(1.0), constraint=constraints.positive)
        # R(u) starts just before onset: frames of a free-viewing trace, or 10 ms bins around one saccade
        lag, width = (-1.0, 1.5) if saccade_onset is None else (-5.0, 5.0)
        self.remap_lag = nn.Parameter(torch.tensor(float(lag)))  # m: frames from onset
        self.remap_width = PyroParam(torch.tensor(float(width)), constraint=constraints.positive)  # w
        self.modulator = Modulator(spec.n_behavior, n) if spec.n_behavior > 0 else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Read a state saved before the pairs of weights and temporal kernels (scenes per frame:
        ``weights`` (neurons, channels), ``temporal`` (neurons, basis)) as one pair."""
        for name in ("weights", "temporal") if "temporal" in self.sites else ():
            for key in (f"{prefix}{name}_loc", f"{prefix}{name}_scale_unconstrained"):
                mine = getattr(self, key[len(prefix) :])
                if key in state_dict and state_dict[key].dim() == mine.dim() - 1 == 2 and mine.shape[1] == 1:
                    state_dict[key] = state_dict[key][:, None]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def plate(self, name: str) -> str | None:
        """The plate of a site: ``"neurons"``, ``"areas"`` or ``None`` (one value per session)."""
        return "areas" if name.startswith("area_") else None if name == "saccade" else "neurons"

    def posterior(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The mean-field posterior: ``{site: (loc, scale)}``."""
        return {
            name: (getattr(self, f"{name}_loc") * self.units.get(name, 1.0), getattr(self, f"{name}_scale"))
            for name in self.sites
        }

    @torch.no_grad()
    def start_at(self, offset: torch.Tensor, coupling: torch.Tensor, size: float | None = None) -> None:
        """Set the posterior means of the offsets (neurons, 2) pixels and couplings (neurons,),
        and the area sites to their areas' means and spreads (the size law's reference
        eccentricity to the area's mean eccentricity); ``size`` (pixels), if given, every
        neuron's pooling size and each area law's intercept."""
        self.offset_loc.copy_(offset / self.pixels)
        self.coupling_loc.copy_(coupling)
        if size is not None:
            self.log_size_loc.fill_(math.log(size))
            if "area_alpha" in self.sites:
                self.area_alpha_loc.fill_(math.log(size))
        if "area_offset" in self.sites:
            for a in range(len(self.area_names)):
                mine = offset[self.area_index == a]
                self.area_offset_loc[a] = mine.mean(0) / self.pixels
                if len(mine) > 1:
                    self.offset_sd_unconstrained[a] = mine.std(0).clamp_min(0.5).log()
                self.ecc_centre[a] = mine.norm(dim=-1).mean()
