"""The Bayesian readout of a session: each neuron's variational posterior over its readout
position, feature weights and bias (and state weights), the priors' scales, and the session's
shifter and modulator.

The posterior is mean-field Normal: ``q(p_i) = Normal(position_loc_i, position_scale_i)`` and so
on, the scales positive through a softplus (``PyroParam`` with ``softplus_positive``); the
prior scales ``tau`` (feature weights), ``sigma_p`` (positions) and ``tau_state`` are
positive point estimates (empirical Bayes). The parameters are module-local: the module is never
called as a ``PyroModule``, only read. ``spread`` (neurons,), 1 while fitting, widens each
neuron's posterior scales by a factor that :meth:`ImageTwin.recalibrate` chooses on held-out
trials (:mod:`probtwin.twins.recalibration`).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

from probtwin.data.registry import SessionSpec
from probtwin.errors import DataError
from probtwin.nn import Modulator, PositionPredictor, Shifter

__all__ = ["BayesianReadout"]

_POSITIVE = constraints.softplus_positive


class BayesianReadout(PyroModule):
    """One session's per-neuron variational parameters, priors, shifter and modulator.

    Parameters
    ----------
    spec : SessionSpec
    channels : int
        Feature channels of the core.
    config : dict
        The image twin's settings (``init_range``, ``position_init_scale``, ``init_scale``,
        ``weight_prior_scale``, ``position_prior_scale``, ``shifter``, ``modulator``,
        ``state_readout``, ``state_prior_scale``).
    bias_init : torch.Tensor, shape (neurons,)
    """

    def __init__(self, spec: SessionSpec, channels: int, config: dict, bias_init: torch.Tensor) -> None:
        super().__init__()
        n = spec.n_neurons
        self.image_shape = tuple(spec.stimulus_shape)
        init, small = config["init_range"], config["init_scale"] * 0.1
        self.position_loc = torch.nn.Parameter(torch.empty(n, 2).uniform_(-init, init))
        self.position_scale = PyroParam(torch.full((n, 2), config["position_init_scale"]), constraint=_POSITIVE)
        self.weight_loc = torch.nn.Parameter(torch.randn(n, channels) * 0.01)
        self.weight_scale = PyroParam(torch.full((n, channels), small), constraint=_POSITIVE)
        self.bias_loc = torch.nn.Parameter(bias_init.clone())
        self.bias_scale = PyroParam(torch.full((n,), small), constraint=_POSITIVE)
        self.register_buffer("spread", torch.ones(n))
        self.tau = PyroParam(torch.tensor(float(config["weight_prior_scale"])), constraint=constraints.positive)
        if spec.neuron_coords is not None:
            coords = torch.as_tensor(spec.neuron_coords, dtype=torch.float32)
            coords = (coords - coords.mean(0)) / coords.std(0).clamp_min(1e-6)
            self.register_buffer("coords", coords)
            self.position_prior = PositionPredictor(coords.shape[1])
            scale = torch.tensor(float(config["position_prior_scale"]))
            self.sigma_p = PyroParam(scale, constraint=constraints.positive)
        else:
            self.coords = None
            self.position_prior = None
        use_shifter = config["shifter"] if config["shifter"] is not None else spec.has_gaze
        use_modulator = config["modulator"] if config["modulator"] is not None else spec.n_behavior > 0
        if use_shifter and not spec.has_gaze:
            raise DataError("shifter", "a recording with gaze", f"no gaze in {spec.name!r}")
        if use_modulator and spec.n_behavior == 0:
            raise DataError("modulator", "a recording with behaviour", f"no behaviour in {spec.name!r}")
        self.shifter = Shifter() if use_shifter else None
        self.modulator = Modulator(spec.n_behavior, n) if use_modulator else None
        self.state_loc = None
        if config["state_readout"]:
            if spec.n_behavior == 0:
                raise DataError("state_readout", "a recording with behaviour", f"no behaviour in {spec.name!r}")
            shape = (n, spec.n_behavior, channels)
            self.state_loc = torch.nn.Parameter(torch.zeros(shape))
            self.state_scale = PyroParam(torch.full(shape, small), constraint=_POSITIVE)
            prior = torch.full((n, spec.n_behavior, 1), float(config["state_prior_scale"]))
            self.tau_state = PyroParam(prior, constraint=constraints.positive)  # per neuron and variable

    def position_prior_dist(self) -> dist.Distribution:
        """``p_i ~ Normal(m_phi(c_i), sigma_p^2 I)``, or ``Normal(0, I)`` without coordinates."""
        n = self.position_loc.shape[0]
        if self.position_prior is None:
            return dist.Normal(torch.zeros_like(self.position_loc), 1.0).to_event(1)
        return dist.Normal(self.position_prior(self.coords), self.sigma_p.expand(n, 2)).to_event(1)

    def posterior(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The mean-field posterior: ``{site: (loc, scale)}``, each neuron's scales times its ``spread``."""
        s = self.spread
        out = {
            "position": (self.position_loc, self.position_scale * s[:, None]),
            "weights": (self.weight_loc, self.weight_scale * s[:, None]),
            "bias": (self.bias_loc, self.bias_scale * s),
        }
        if self.state_loc is not None:
            out["state_weights"] = (self.state_loc, self.state_scale * s[:, None, None])
        return out

    @torch.no_grad()
    def start_at(self, centres: torch.Tensor) -> None:
        """Set the posterior means of the positions to pixels ``centres`` (neurons, 2) as (x, y)
        (e.g. :func:`probtwin.nn.energy.energy_rf_centres`) of the session's images."""
        height, width = self.image_shape[-2:]
        size = torch.tensor([width, height], dtype=torch.float32)
        self.position_loc.copy_((2 * centres + 1) / size - 1)

    def position_posterior(self, gaze_origin: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of each position (neurons, 2) as (x, y), grid
        units, shifted to where the neuron reads at the standardised gaze ``gaze_origin`` (1, 2)
        when there is a shifter."""
        loc, scale = self.posterior()["position"]
        if self.shifter is not None and gaze_origin is not None:
            loc = loc + self.shifter(gaze_origin)
        return loc, scale

    def to_pixels(self, grid: torch.Tensor) -> torch.Tensor:
        """Grid units in [-1, 1] (..., 2) as (x, y) to image pixels (centres at integers)."""
        height, width = self.image_shape[-2:]
        size = torch.tensor([width, height], dtype=grid.dtype, device=grid.device)
        return (grid + 1) * size / 2 - 0.5
