"""ImageTwin: a deep feature core with a Bayesian, brain-informed readout.

The generative story, for session s, trial t (image x_t, behaviour b_t, gaze g_t) and neuron i:

    core            F = F_theta([x_t, b_t])                      point estimate, weight prior
    position        p_i ~ Normal(m_phi(c_i), sigma_p^2 I)        m_phi: MLP of cortical coordinates
                                                                 (Normal(0, 1) without coordinates)
    feature weights w_i ~ Normal(0, tau^2 I)
    bias            beta_i ~ Normal(0, 10^2)
    state weights   V_ij ~ Normal(0, tau_ij^2 I)  (channels) per behavioural variable j, with state_readout
    shift           delta_t = h_psi(g_t)                          shifter, when there is gaze
    gain            gain_ti = exp(u_i . z_psi(b_t))                modulator, when there is behaviour
    mean            lambda_ti = f((w_i + V_i^T b_t) . F[p_i + delta_t] + beta_i) gain_ti,
                                                                 f = ELU + 1 or softplus
    response        y_ti ~ likelihood(lambda_ti)                  independent given lambda

The posterior over (p_i, w_i, beta_i[, V_i]) is mean-field Normal; core, shifter, modulator, position
MLP, sigma_p, tau and the noise parameters are point estimates (empirical Bayes). Trials form a
subsampled plate, so a minibatch's likelihood is scaled to the whole train tier.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from probtwin.arviz import ArvizExport
from probtwin.data.batching import batch_arrays
from probtwin.data.recording import Recording
from probtwin.data.registry import check_image_specs
from probtwin.errors import DataError
from probtwin.infer import seeded
from probtwin.nn import ConvCore, readout_response
from probtwin.nn.energy import energy_rf_centres
from probtwin.twins.base import SessionSpec, Twin
from probtwin.twins.evaluation import Evaluation
from probtwin.twins.latent import LatentStateQueries
from probtwin.twins.likelihoods import inverse_link, link
from probtwin.twins.noise import resolve_likelihood
from probtwin.twins.posterior import member_quantile, resolve_combination, resolve_posterior
from probtwin.twins.queries import PosteriorQueries
from probtwin.twins.readout import BayesianReadout
from probtwin.twins.recalibration import Recalibration

__all__ = ["ImageTwin"]

_NOT_SETTINGS = ("self", "recordings", "likelihood", "core", "_specs", "__class__")  # the rest is saved


class ImageTwin(PosteriorQueries, Evaluation, ArvizExport, LatentStateQueries, Recalibration, Twin):
    """A probabilistic twin of a population's responses to images.

    Parameters
    ----------
    recordings : Recording or list of Recording
        Images (trials, C, H, W) with responses (trials, neurons); several sessions (animals) share
        one core, each with its own readout (Lurz et al. 2021).
    likelihood : {"poisson", "negative_binomial", "gamma", "zig", "normal"}, optional
        Observation model (default ``"poisson"``; none for the flows, whose density is the flow's).
        Count likelihoods refuse negative responses (a DataError) and accept trial averages.
    noise : {"independent", "flow", "zero_inflated_flow", "latent"}
        How responses vary around the prediction (:mod:`probtwin.twins.noise`): independently; a
        latent-state flow (correlated, exact density); the same with exact zeros; or a latent state
        on the log rate of counts (``likelihood`` "poisson" or "negative_binomial").
    latent_rank : int
        Dimensions of the shared latent state (flows: 0 is independent noise in the flow's Gaussian
        space; ``"latent"``: at least 1).
    dequantize : bool
        Flows on integer counts: model ``y + U(0, 1)`` (the log-likelihood is then a lower bound).
    hidden_channels, layers, input_kernel, hidden_kernel : int
        Core shape, as the Sensorium 2022 baseline (4 layers, 9 x 9 input kernel, 7 x 7
        depth-separable kernels) with 32 channels rather than 64: a quarter of the cost per step,
        and better V4 predictions within a 15-minute CPU budget (see the ImageTwin guide page).
    output : {"elu", "softplus"}
        Output nonlinearity f (ELU + 1 or softplus); ``normal`` uses the identity.
    behavior_in_core : bool, optional
        Feed standardised behaviour to the core as channels (Sensorium+), so that state can change
        selectivity, not only gain. Default: when every session has behaviour, unless
        ``state_readout`` is on: then state reaches the responses through the Bayesian readout
        (and the modulator) only, so that every state effect has a posterior. (Through a core that
        is a point estimate, a state effect is certain: a test of state effects then finds
        shifts that are not there.)
    state_readout : bool
        Feature weights ``w_i + V_i^T b_t`` that change with the standardised behaviour, ``V_i``
        Bayesian under an automatic-relevance prior ``V_ij ~ Normal(0, tau_ij^2 I)`` (``tau_ij``
        learned, started at ``state_prior_scale``): a neuron's preferred orientation can change
        with state, which a gain modulator cannot represent; the prior shrinks the rest to none.
    shifter, modulator : bool, optional
        Default: on when the recordings have gaze, respectively behaviour.
    position_prior_scale, weight_prior_scale : float
        Initial sigma_p (grid units) and tau of the position and feature-weight priors (learned).
    core_prior_scale : float
        Standard deviation of the Gaussian prior on the core's weights.
    laplace_weight : float
        Smoothness penalty on the first layer's kernels, per minibatch as the Sensorium baseline's
        ``gamma_input``, scaled to the whole train tier.
    position_init : {"energy", "uniform"}
        Start each readout position where the neuron's training responses follow local contrast
        energy best (``probtwin.nn.energy``), or uniformly in [-init_range, init_range].
    init_range, init_scale, position_init_scale : float
        Initial spread of the positions, and initial posterior scales of weights and bias, and of
        positions (a wide start lets the positions explore before the posterior narrows).
    posterior : {"readout", "ensemble", "bootstrap", "swag"}, optional
        What is uncertain (:mod:`probtwin.twins.posterior`): the readout only, with the rest point
        estimates; or the whole twin, as a deep ensemble of ``members`` fits, as ``members`` fits
        of bootstrap resamples of the training trials (a bagged posterior), or as ``members``
        SWAG draws (``swag_epochs`` further epochs, rank ``swag_rank``). Default (None): the
        class's :attr:`default_posterior`, ``"ensemble"`` for an ImageTwin (three fits: the
        only posterior whose intervals and state tests held on the simulator, at three times the
        fitting time), ``"readout"`` for a VideoTwin and a GazeTwin (not yet measured).
    members : int, optional
        Members of the whole-twin posterior (default: 1, 3, 3 and 10 for the four).
    combination : {"mixture", "student"}, optional
        How the members' draws of a mean response combine (:mod:`probtwin.twins.posterior`):
        default ``"student"`` for an ensemble or bootstrap (K independent fits, the truth taken
        as one more: Student-t between them), ``"mixture"`` for SWAG.
    core : torch.nn.Module, optional
        Another core, from (batch, channels [+ behaviour], H, W) to (batch, out_channels, H', W'),
        with an int attribute ``out_channels``. Its weights are saved with the twin, its code is
        not: ``probtwin.load(path, core=the_same_module)``.
    seed : int
        Seed of the initial parameters.

    Examples
    --------
    >>> sim = pt.simulate.v1(n_neurons=20, n_images=200, seed=0)  # doctest: +SKIP
    >>> twin = pt.ImageTwin(sim.recording).fit(max_epochs=5)      # doctest: +SKIP
    """

    def __init__(
        self,
        recordings: Recording | list[Recording] | None,
        likelihood: str | None = None,
        noise: str = "independent",
        *,
        latent_rank: int = 0,
        dequantize: bool = False,
        hidden_channels: int = 32,
        layers: int = 4,
        input_kernel: int = 9,
        hidden_kernel: int = 7,
        output: str = "elu",
        behavior_in_core: bool | None = None,
        state_readout: bool = False,
        state_prior_scale: float = 0.1,
        shifter: bool | None = None,
        modulator: bool | None = None,
        position_prior_scale: float = 0.3,
        weight_prior_scale: float = 0.1,
        core_prior_scale: float = 1.0,
        laplace_weight: float = 6.0,
        init_range: float = 0.3,
        init_scale: float = 0.05,
        position_init_scale: float = 0.1,
        position_init: str = "energy",
        posterior: str | None = None,
        members: int | None = None,
        combination: str | None = None,
        swag_epochs: int = 10,
        swag_rank: int = 5,
        core: nn.Module | None = None,
        seed: int = 0,
        _specs: list[SessionSpec] | None = None,
    ) -> None:
        likelihood = resolve_likelihood(noise, likelihood)
        posterior = self.default_posterior if posterior is None else posterior
        members = resolve_posterior(posterior, members)
        combination = resolve_combination(posterior, members, combination)
        if output not in ("elu", "softplus"):
            raise DataError("output", "'elu' or 'softplus'", repr(output))
        config = {key: value for key, value in locals().items() if key not in _NOT_SETTINGS}
        config.update(state_readout=bool(state_readout), custom_core=core is not None)
        if position_init not in ("energy", "uniform"):
            raise DataError("position_init", "'energy' or 'uniform'", repr(position_init))
        super().__init__(recordings, likelihood, config, specs=_specs)
        self._check_specs()
        n_behavior = {s.n_behavior for s in self.specs}
        if behavior_in_core is None:
            behavior_in_core = not state_readout and len(n_behavior) == 1 and n_behavior != {0}
        if behavior_in_core and (len(n_behavior) != 1 or n_behavior == {0}):
            raise DataError("behavior_in_core", "sessions with the same behavioural variables", f"{n_behavior}")
        self.config["behavior_in_core"] = bool(behavior_in_core)
        in_channels = self.specs[0].stimulus_shape[0] + (self.specs[0].n_behavior if behavior_in_core else 0)
        with seeded(seed):  # the same seed, the same initial twin
            self._build(in_channels, core)

    def _check_specs(self) -> None:
        check_image_specs(self.specs)

    def _default_core(self, in_channels: int, **options: Any) -> nn.Module:
        """The core of the settings (``options``: more of :class:`~probtwin.nn.ConvCore`'s)."""
        layers, input_kernel, hidden_kernel = (self.config[k] for k in ("layers", "input_kernel", "hidden_kernel"))
        return ConvCore(in_channels, self.config["hidden_channels"], layers, input_kernel, hidden_kernel, **options)

    def _build(self, in_channels: int, core: nn.Module | None) -> None:
        if core is None:
            self.core = self._default_core(in_channels)
        else:
            out = getattr(core, "out_channels", None)
            if not isinstance(out, int):
                raise DataError("core", "a torch module with an int attribute out_channels", type(core).__name__)
            self.core = core
            self.config["hidden_channels"] = out
        self.readouts = self._readouts(self.core.out_channels)
        if self.config["position_init"] == "energy" and self.recordings:
            self._init_positions()

    def _readouts(self, channels: int) -> nn.ModuleList:
        """Each session's readout: its per-neuron variational parameters and priors."""
        return nn.ModuleList(
            BayesianReadout(spec, channels, self.config, self._bias_init(k)) for k, spec in enumerate(self.specs)
        )

    @torch.no_grad()
    def _init_positions(self) -> None:
        """Start each readout position where the neuron's responses follow local contrast energy."""
        for k, rec in enumerate(self.recordings):
            train = rec.split("train")
            self.readouts[k].start_at(energy_rf_centres(self._energy_batches(k, train), lags=self._energy_lags))

    _energy_lags = 1  # frames of latency the energy map considers (images: none)

    def _energy_batches(self, k: int, train: Recording, elements: int = 2**22):
        """The train tier's standardised stimuli with responses, about ``elements`` pixels at a
        time."""
        size = max(1, elements // int(np.prod(self.specs[k].stimulus_shape)))
        for i in np.array_split(np.arange(train.n_trials), -(-train.n_trials // size)):
            b = self._batch(k, batch_arrays(train, i))
            yield b["stimuli"], b["responses"]

    #: The whole-twin posterior of ``posterior=None`` (see the "Whole-twin posterior" page).
    default_posterior: str = "ensemble"

    #: Settings a twin saved before they existed was built with, where they differ from today's
    #: defaults (read by :meth:`_from_specs` under the saved config).
    _saved_before: dict[str, object] = {"posterior": "readout"}

    @classmethod
    def _from_specs(cls, specs: list[SessionSpec], likelihood: str, config: dict, core: nn.Module | None = None):
        config = {**cls._saved_before, **config}
        if config.pop("custom_core", False) and core is None:
            expected = "the core module this twin was built with (probtwin.load(path, core=...))"
            raise DataError("core", expected, "None: a custom core's code is not saved")
        return cls(None, likelihood, **config, core=core, _specs=specs)

    def _fresh(self, seed: int) -> ImageTwin:
        """A new twin of these settings on these recordings, initialised from ``seed`` (a custom
        core is copied and its layers' ``reset_parameters`` run under the seed)."""
        config = {key: value for key, value in self.config.items() if key != "custom_core"}
        core = None
        if self.config.get("custom_core"):
            core = copy.deepcopy(self.core)
            with seeded(seed):
                for module in core.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
        return type(self)(self.recordings, self.likelihood_name, **{**config, "seed": seed}, core=core)

    def _variational_parameters(self) -> set[str]:
        names = {"position_loc", "position_scale_unconstrained", "weight_loc", "weight_scale_unconstrained"}
        names |= {"bias_loc", "bias_scale_unconstrained", "state_loc", "state_scale_unconstrained"}
        own = (name for name, _ in self.named_parameters() if name.startswith("readouts."))
        return {name for name in own if name.split(".")[-1] in names}

    def _bias_init(self, k: int) -> torch.Tensor:
        noise, mean = self.noise[k], getattr(self, f"response_mean_{k}")
        if noise.gaussian_space:
            return noise.location_of(mean).detach()
        return inverse_link(mean, self.config["output"], self.likelihood_name)

    # ------------------------------------------------------------------ the generative story

    def _features(self, batch: dict) -> torch.Tensor:
        """The core's feature maps, computed once per batch (the guide and the model share them)."""
        key = id(next(self.core.parameters(), None))  # a whole-twin posterior's member has its own core
        if batch.get("features", (None,))[0] != key:
            x = batch["stimuli"]
            if self.config["behavior_in_core"]:
                b = batch["behavior"][:, :, None, None].expand(-1, -1, *x.shape[-2:])
                x = torch.cat([x, b], dim=1)
            batch["features"] = (key, self.core(x))
        return batch["features"][1]

    def _readout_shift(self, batch: dict) -> torch.Tensor | None:
        """The shifter's move of every readout position, (batch, 2) grid units; None without one."""
        shifter = self.readouts[batch["session"]].shifter
        return None if shifter is None else shifter(batch["gaze"])

    def _location(self, batch: dict, position, weights, bias, state_weights=None) -> torch.Tensor:
        """Locations (batch, neurons), or (draws, batch, neurons) for stacked draws: the mean
        response, or for a flow the mean in its Gaussian space (the modulator's log gain added)."""
        k = batch["session"]
        r = self.readouts[k]
        shift = self._readout_shift(batch)
        eta = readout_response(
            self._features(batch),
            position,
            weights,
            bias,
            shift,
            batch.get("behavior"),
            state_weights,
            **self._readout_lags(batch),
        )
        if self.noise[k].gaussian_space:
            return eta if r.modulator is None else eta + r.modulator.log_gain(batch["behavior"])
        mean = link(eta, self.config["output"], self.likelihood_name)
        if r.modulator is not None:
            mean = mean * r.modulator(batch["behavior"])
        return mean

    def _readout_lags(self, batch: dict) -> dict:
        """``lags`` and ``frames`` of :func:`~probtwin.nn.readout_response` (images: none)."""
        return {}

    def _core_log_prior(self, batch: dict) -> torch.Tensor:
        scale = self.config["core_prior_scale"]
        sq = sum(p.pow(2).sum() for name, p in self.core.named_parameters() if name.endswith("weight"))
        per_batch = batch["n_total"] / len(batch["index"])
        penalty = self.core.laplace_penalty() if hasattr(self.core, "laplace_penalty") else 0.0
        laplace = self.config["laplace_weight"] * penalty * per_batch
        return (-0.5 * sq / scale**2 - laplace) / len(self.specs)

    def model(self, batch: dict) -> None:
        k = batch["session"]
        r = self.readouts[k]
        n, channels = r.weight_loc.shape
        pyro.factor("core_prior", self._core_log_prior(batch))
        tau = r.tau
        with pyro.plate(f"neurons_{k}", n, dim=-1):
            position = pyro.sample(f"position_{k}", r.position_prior_dist())
            weights = pyro.sample(f"weights_{k}", dist.Normal(0.0, tau).expand([n, channels]).to_event(1))
            bias = pyro.sample(f"bias_{k}", dist.Normal(torch.zeros_like(r.bias_loc), 10.0))
            state = None
            if r.state_loc is not None:
                prior = dist.Normal(torch.zeros_like(r.state_loc), r.tau_state).to_event(2)
                state = pyro.sample(f"state_weights_{k}", prior)
        loc = self._location(batch, position, weights, bias, state)
        self.noise[k].observe(f"responses_{k}", loc, batch)

    def guide(self, batch: dict) -> None:
        k = batch["session"]
        r = self.readouts[k]
        post = r.posterior()
        with pyro.plate(f"neurons_{k}", r.weight_loc.shape[0], dim=-1):
            for name in ("position", "weights"):
                loc, scale = post[name]
                pyro.sample(f"{name}_{k}", dist.Normal(loc, scale).to_event(1))
            pyro.sample(f"bias_{k}", dist.Normal(*post["bias"]))
            if "state_weights" in post:
                pyro.sample(f"state_weights_{k}", dist.Normal(*post["state_weights"]).to_event(2))
        means = {name: loc for name, (loc, _) in post.items()}  # the latent state's guide is centred there
        self.noise[k].guide(f"responses_{k}", batch, lambda: self._location(batch, **means))

    # ------------------------------------------------------------------ posterior queries

    site_dims = {
        "position": ("neuron", "xy"),
        "weights": ("neuron", "channel"),
        "state_weights": ("neuron", "behavior", "channel"),
    }

    def _elements_per_neuron(self, k: int) -> int:
        return self.config["hidden_channels"] * (2 if self.config["state_readout"] else 1)

    @torch.no_grad()
    def readout_positions(self, session=None, level: float = 0.9, pixels: bool = True) -> dict[str, np.ndarray]:
        """Posterior of each neuron's readout position (the receptive-field centre it reads from).

        Returns
        -------
        dict
            ``mean``, ``lower``, ``upper`` (neurons, 2) as (x, y), at gaze (0, 0) when the twin has a
            shifter: image pixels (centres at integers, as the simulator's ``truth["rf_position"]``)
            when ``pixels``, else grid units in [-1, 1]; the central ``level`` posterior interval.
        """
        if not 0 < level < 1:
            raise DataError("level", "a probability in (0, 1)", repr(level))
        k = self.session_index(session)
        gaze = getattr(self, f"gaze_mean_{k}")
        origin = (torch.zeros(1, 2, device=gaze.device) - gaze) / getattr(self, f"gaze_std_{k}")
        r = self.readouts[k]
        components = self._components() or [lambda thunk: thunk()]
        members = [within(lambda: r.position_posterior(origin)) for within in components]
        loc, scale = (torch.stack(v) for v in zip(*members, strict=True))
        tail, combination = (1 - level) / 2, self._combination()
        out = {
            "mean": loc.mean(0),  # (members, neurons, 2): each member's Normal, combined
            "lower": member_quantile(loc, scale, tail, combination),
            "upper": member_quantile(loc, scale, 1 - tail, combination),
        }
        return {key: (r.to_pixels(v) if pixels else v).cpu().numpy() for key, v in out.items()}
