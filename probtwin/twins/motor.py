"""MotorGraphTwin: a latent dynamical system on a graph of units that predicts spikes and behaviour.

Generative story of one trial (frames t = 0..T-1, units n = 1..N as graph nodes, latent states
``x_n(t)`` in R^d, task inputs ``u(t)`` such as the reach target)::

    w_e ~ Cauchy(0, lambda)   (learned graph: all ordered pairs; a sparsity prior whose heavy
                               tails leave strong edges unshrunk; or Laplace)
          Normal(0, lambda)   (a given or k-nearest-neighbour graph)
    D_n ~ Normal(0, tau_n^2)                                   behaviour readout, (dims, d)
    x_n(0) ~ Normal(m_n, s^2)
    x(t+1) = f(x(t), messages over the graph, u(t)) + sigma eps    (probtwin.nn.graph.GraphDynamics)
    y_n(t) ~ Poisson(exp(c_n . x_n(t) + beta_n))                (or the chosen likelihood)
    v(t)   ~ Normal(sum_n D_n x_n(t) + v_0, rho^2)              (behaviour, standardised)

The model is written in its innovations (non-centred): ``e(0) = x(0)`` and
``e(t+1) = x(t+1) - f(x(t), u(t))``, so that the states are a deterministic rollout of the
innovations through the graph dynamics (:func:`probtwin.nn.graph.rollout`) and the prior of the
innovations is Normal. The edge weights and the behaviour readout are random with mean-field
Normal posteriors; each unit's readout scale ``tau_n`` is a point estimate (automatic relevance
determination: the readout of units that carry no behaviour shrinks to zero); the dynamics
(``a``, ``W``, ``B_n``, ``b_n``, ``sigma``), the spike readout and the initial-state prior are point
estimates. The innovations have an amortized guide, ``q(e | y) = prod_{t, n} Normal(mu_nt(y),
s_nt(y))`` with ``mu, s`` from a bidirectional GRU over each node's trial
(:class:`probtwin.nn.sequence.NodeSequenceEncoder`); the states it implies follow the dynamics
(a guide that proposed the states frame by frame would hand the dynamics noisy regressors and
learn them attenuated). The guide sees spikes and task inputs but never behaviour, so that
behaviour is decoded from spikes alone. During fitting a random fraction of units is hidden from
the guide on each trial (coordinated dropout) while the likelihood scores all of them: the guide
learns to infer a unit's state from the others, which is what co-smoothing asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer import local_elbo, seeded
from probtwin.nn.graph import GraphDynamics, check_edge_index, complete_graph, knn_graph, rollout
from probtwin.nn.sequence import NodeSequenceEncoder
from probtwin.twins.base import SessionSpec, Twin
from probtwin.twins.likelihoods import Likelihood, inverse_softplus
from probtwin.twins.motor_queries import MotorQueries

__all__ = ["MotorGraphTwin"]

GRAPHS = ("learned", "knn")
VALIDATION_SCORES = ("elbo", "behavior")
#: Behaviour weights :meth:`MotorGraphTwin.fit_decoder` searches. On DAD chewie session 0 (the
#: development set; twins stopped by validation R^2) the validation R^2 rose with the weight to
#: 1000 and fell at 3000 and 10000.
DECODING_WEIGHTS = (1.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
#: Posterior draws of each validation decode (``validation="behavior"``), seeded.
VALIDATION_DRAWS = 20
EDGE_PRIORS = {"cauchy": dist.Cauchy, "laplace": dist.Laplace, "normal": dist.Normal}
_MAX_LOG_RATE = 12.0


def _per_draw(value: torch.Tensor, event_dims: int) -> torch.Tensor:
    """A global site's value as (event...) or, under a query's plate of posterior draws,
    (draws, event...): the plates' singleton dimensions dropped."""
    return value.reshape(-1, *value.shape[-event_dims:]) if value.dim() > event_dims else value


class MotorGraphTwin(MotorQueries, Twin):
    """Message-passing graph twin of a sensorimotor population (spikes and behaviour over time).

    Parameters
    ----------
    recording : Recording
        One time series: responses (trials, frames, units) spike counts, optional behaviour
        (trials, frames, dims) such as hand velocity, optional stimuli (trials, frames, inputs)
        such as a one-hot reach target.
    graph : {"learned", "knn"} or array of shape (2, edges)
        ``"learned"``: every ordered pair of units is an edge with a sparsity prior on its
        weight (E = N (N - 1): for large N give a sparse graph); ``"knn"``: edges from each
        unit's ``n_neighbors`` nearest units by ``recording.neuron_coords``, the messages gated by
        distance; an array: the ``(source, target)`` pairs, e.g. from anatomy.
    latent_dim : int
        State dimension ``d`` of each node.
    likelihood : str
        Spikes given the rate (``"poisson"``, ``"negative_binomial"``, ...).
    behavior_likelihood : str
        Behaviour given the readout (``"normal"``).
    n_neighbors : int
        ``k`` of ``graph="knn"``.
    edge_prior : {"cauchy", "laplace", "normal"}, optional
        Prior of the edge weights; default ``"cauchy"`` for a learned graph (sparse, heavy
        tails: strong edges are not shrunk), ``"normal"`` for a given or knn graph.
    edge_prior_scale : float, optional
        ``lambda``, the prior's scale; default 0.02 for the sparsity priors (chosen on the
        simulator, where 0.01-0.02 recovered the graph best), 0.3 for ``"normal"``.
    behavior_prior_scale : float
        Starting value of each unit's ``tau_n``, in units of the standardised behaviour.
    hidden, context : int
        Width of the guide's GRU (per direction) and of its population context.
    input_dropout : float
        Fraction of units hidden from the guide on each training trial.
    behavior_weight : float
        Weight of the behaviour's log-likelihood in the bound (a tempered likelihood: each
        behaviour value counts as this many observations). The states are otherwise shaped
        almost only by the spikes (N counts per bin against a few behaviour values), and the
        behaviour readout regresses to the mean. The default, 1, is the untempered model (the
        right one for the graph, lesions and co-smoothing). For decoding choose it on the
        validation tier with ``validation="behavior"``: :meth:`fit_decoder` does (among
        :data:`DECODING_WEIGHTS`), as ``probtwin bench motor-real`` does; heavy weights decode
        best and give up the spike model (see the motor twin's page).
    validation : {"elbo", "behavior"}
        What the fit's early stopping (and the best state it keeps) follows on the validation
        trials: ``"elbo"``, the local ELBO per observed value (the generative model's own
        figure); ``"behavior"``, the R^2 of the behaviour decoded from spikes (the figure a
        decoder is stopped by; needs behaviour in the recording).
    edge_attr : array (edges, features), optional
        Features of a given graph's edges (the messages are gated by them).
    seed : int
        Seed of the initial parameters.

    Examples
    --------
    >>> sim = pt.simulate.motor(n_units=20, n_trials=60, frames=12, seed=0)  # doctest: +SKIP
    >>> twin = pt.MotorGraphTwin(sim.recording, graph="learned", latent_dim=1)  # doctest: +SKIP
    """

    site_dims = {"edge_weights": ("edge",), "behavior_weights": ("neuron", "behavior", "latent")}
    #: A session holds tens of trials: small batches, and room to converge (chosen on DAD chewie
    #: session 0, the development set).
    fit_defaults = {"max_epochs": 400, "batch_size": 16, "patience": 25}

    def __init__(
        self,
        recording: Recording | None,
        graph: str | np.ndarray = "learned",
        latent_dim: int = 2,
        likelihood: str = "poisson",
        behavior_likelihood: str = "normal",
        n_neighbors: int = 8,
        edge_prior: str | None = None,
        edge_prior_scale: float | None = None,
        behavior_prior_scale: float = 1.0,
        hidden: int = 32,
        context: int = 16,
        input_dropout: float = 0.25,
        behavior_weight: float = 1.0,
        validation: str = "elbo",
        edge_attr: np.ndarray | None = None,
        seed: int = 0,
        _specs: list[SessionSpec] | None = None,
        _n_edges: int | None = None,
        _edge_dim: int = 0,
    ) -> None:
        if _specs is None:
            self._check_recording(recording)
        if int(latent_dim) != latent_dim or latent_dim < 1:
            raise DataError("latent_dim", "an integer >= 1", repr(latent_dim))
        if not 0 <= input_dropout < 1:
            raise DataError("input_dropout", "a fraction in [0, 1)", repr(input_dropout))
        kind = graph if isinstance(graph, str) else "given"
        if isinstance(graph, str) and graph not in (*GRAPHS, "given"):
            raise DataError("graph", f"one of {GRAPHS} or an edge_index array (2, edges)", repr(graph))
        if edge_prior is None:
            edge_prior = "cauchy" if kind == "learned" else "normal"
        if edge_prior not in EDGE_PRIORS:
            raise DataError("edge_prior", f"one of {tuple(EDGE_PRIORS)}", repr(edge_prior))
        if edge_prior_scale is None:
            edge_prior_scale = 0.3 if edge_prior == "normal" else 0.02
        scales = ("edge_prior_scale", edge_prior_scale), ("behavior_prior_scale", behavior_prior_scale)
        for name, value in (*scales, ("behavior_weight", behavior_weight)):
            if not value > 0:
                raise DataError(name, "a positive scale", repr(value))
        if validation not in VALIDATION_SCORES:
            raise DataError("validation", f"one of {VALIDATION_SCORES}", repr(validation))
        if validation == "behavior" and _specs is None and recording.behavior is None:
            raise DataError("behavior", "behaviour to decode for validation='behavior'", "None")
        if behavior_likelihood != "normal":
            raise DataError("behavior_likelihood", "'normal'", repr(behavior_likelihood))
        config = dict(
            graph=kind,
            edge_prior=edge_prior,
            latent_dim=int(latent_dim),
            behavior_likelihood=behavior_likelihood,
            n_neighbors=int(n_neighbors),
            edge_prior_scale=float(edge_prior_scale),
            behavior_prior_scale=float(behavior_prior_scale),
            hidden=int(hidden),
            context=int(context),
            input_dropout=float(input_dropout),
            behavior_weight=float(behavior_weight),
            validation=validation,
            seed=int(seed),
        )
        super().__init__(recording, likelihood, config, specs=_specs)
        spec = self.specs[0]
        n, d = spec.n_neurons, int(latent_dim)
        self.n_inputs = spec.stimulus_shape[-1] if spec.stimulus_shape else 0
        self.n_behavior = spec.n_behavior
        self.latent_dim = d
        if _specs is None:
            edges, attr = self._graph(recording, graph, n_neighbors, edge_attr)
        else:
            edges = torch.zeros(2, _n_edges, dtype=torch.long)
            attr = torch.zeros(_n_edges, _edge_dim) if _edge_dim else None
        self.config.update(_n_edges=int(edges.shape[1]), _edge_dim=0 if attr is None else int(attr.shape[1]))
        self.register_buffer("edge_index", edges)
        self.register_buffer("edge_attr", attr)
        with seeded(seed):  # the same seed, the same initial twin
            n_edges = edges.shape[1]
            self.dynamics = GraphDynamics(n, d, self.n_inputs, self.config["_edge_dim"])
            self.raw_process_scale = nn.Parameter(inverse_softplus(torch.full((d,), 0.3)))
            self.init_loc = nn.Parameter(torch.zeros(n, d))
            self.raw_init_scale = nn.Parameter(inverse_softplus(torch.ones(d)))
            self.spike_weight = nn.Parameter(torch.full((n, d), 0.5 / np.sqrt(d)))
            self.spike_bias = nn.Parameter(torch.log(self.response_mean_0.clamp_min(1e-3)))
            self.encoder = NodeSequenceEncoder(n, self.n_inputs, d, hidden, context)
            self.edge_loc = nn.Parameter(torch.zeros(n_edges))
            self.raw_edge_scale = nn.Parameter(inverse_softplus(torch.full((n_edges,), 0.5 * edge_prior_scale)))
            if self.n_behavior:
                self.behavior_likelihood = Likelihood("normal", self.n_behavior)
                self.behavior_bias = nn.Parameter(torch.zeros(self.n_behavior))
                self.behavior_loc = nn.Parameter(torch.zeros(n, self.n_behavior, d))
                self.raw_behavior_tau = nn.Parameter(inverse_softplus(torch.full((n,), float(behavior_prior_scale))))
                self.raw_behavior_scale = nn.Parameter(
                    inverse_softplus(torch.full((n, self.n_behavior, d), 0.1 * behavior_prior_scale))
                )

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _check_recording(rec: Any) -> None:
        if isinstance(rec, (list, tuple)):
            raise DataError("recording", "one Recording (a graph is one session's units)", f"{len(rec)} recordings")
        if not isinstance(rec, Recording):
            raise DataError("recording", "a probtwin.Recording", type(rec).__name__)
        if rec.n_frames is None:
            raise DataError("responses", "a time series (trials, frames, units)", f"shape {rec.responses.shape}")
        if rec.stimuli is not None and rec.stimulus_kind != "task":
            raise DataError("stimuli", "task inputs (trials, frames, features) or None", f"{rec.stimulus_kind}")
        if rec.behavior is not None and rec.behavior.ndim != 3:
            raise DataError("behavior", "per-frame behaviour (trials, frames, dims)", f"shape {rec.behavior.shape}")

    def _graph(self, rec: Recording, graph: Any, k: int, edge_attr: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = rec.n_neurons
        if isinstance(graph, str) and graph == "learned":
            return complete_graph(n), None
        if isinstance(graph, str) and graph == "knn":
            if rec.neuron_coords is None:
                raise DataError("neuron_coords", "unit coordinates for graph='knn'", "None")
            coords = np.asarray(rec.neuron_coords, dtype=np.float32)
            edges = knn_graph(coords, k)
            dist_ = np.linalg.norm(coords[edges[0]] - coords[edges[1]], axis=-1)
            scale = np.median(dist_) if np.median(dist_) > 0 else 1.0
            return edges, torch.as_tensor(dist_ / scale, dtype=torch.float32)[:, None]
        if isinstance(graph, str):
            raise DataError("graph", f"one of {GRAPHS} or an edge_index array", repr(graph))
        edges = check_edge_index(graph, n)
        if edge_attr is None:
            return edges, None
        attr = torch.as_tensor(np.asarray(edge_attr, dtype=np.float32))
        attr = attr[:, None] if attr.ndim == 1 else attr
        if attr.ndim != 2 or len(attr) != edges.shape[1] or not torch.isfinite(attr).all():
            raise DataError(
                "edge_attr", f"finite features of shape ({edges.shape[1]}, features)", f"{tuple(attr.shape)}"
            )
        return edges, attr

    @classmethod
    def fit_decoder(
        cls,
        recording: Recording,
        behavior_weights: Sequence[float] = DECODING_WEIGHTS,
        num_samples: int = 200,
        seed: int = 0,
        fit_options: dict | None = None,
        recalibrate: bool = True,
        **options: Any,
    ) -> tuple[MotorGraphTwin, dict[float, dict]]:
        """A twin for decoding behaviour from spikes, its behaviour weight chosen on the validation tier.

        One twin per weight of ``behavior_weights``, each with ``validation="behavior"`` (early
        stopping and the kept state follow the R^2 of its decode of the validation trials) and
        ``options``, fitted with ``fit_options`` (those of :meth:`fit`; ``seed`` is both the twin's
        and the fit's); the twin whose posterior mean decode (``num_samples`` draws) scores the
        highest validation R^2 is returned, its behaviour noise set from its validation error
        (:meth:`recalibrate_behavior`) when ``recalibrate``. A heavy weight makes the states
        serve the behaviour and gives up the spike model (co-smoothing), so use this twin to
        decode and the untempered one (``behavior_weight=1``) for the graph, lesions and
        co-smoothing.

        Parameters
        ----------
        recording : Recording
            Responses (trials, frames, units), behaviour (trials, frames, dims), tiers with a
            validation tier.
        behavior_weights : sequence of float
            The weights tried, one fit each.
        num_samples : int
            Posterior draws of the decode that chooses (and of the recalibration).
        seed : int
            The twins' and fits' seed, and the draws'.
        fit_options : dict, optional
            Keyword arguments of :meth:`fit` (e.g. ``time_limit``; ``progress`` False unless given).
        recalibrate : bool
            Set the chosen twin's behaviour noise from its validation error.
        **options
            Further arguments of the twin (``graph``, ``latent_dim``, ...).

        Returns
        -------
        twin : MotorGraphTwin
            The chosen twin, fitted.
        scores : dict
            Per weight: ``validation_r2``, ``seconds`` (of its fit) and ``stopped`` (why its fit
            stopped).
        """
        if not behavior_weights:
            raise DataError("behavior_weights", "at least one weight", repr(behavior_weights))
        options = {"validation": "behavior", **options}
        validation = recording.split("validation")  # the tier the weight is chosen on
        best, scores = None, {}
        for weight in behavior_weights:
            twin = cls(recording, behavior_weight=weight, seed=seed, **options)
            history = twin.fit(seed=seed, **{"progress": False, **(fit_options or {})})
            r2 = float(twin._decoded_r2(validation, num_samples, seed)[0].mean())
            scores[float(weight)] = {
                "validation_r2": r2,
                "seconds": float(sum(history["seconds"])),
                "stopped": history.stopped,
            }
            if best is None or r2 > best[0]:
                best = (r2, twin)
        if recalibrate:
            best[1].recalibrate_behavior(validation, None, num_samples, seed)
        return best[1], scores

    @classmethod
    def _from_specs(cls, specs: list[SessionSpec], likelihood: str, config: dict) -> MotorGraphTwin:
        config = dict(config)
        graph = config.pop("graph")
        return cls(None, graph=graph, likelihood=likelihood, **config, _specs=specs)

    # ------------------------------------------------------------------ the generative model

    @property
    def process_scale(self) -> torch.Tensor:
        return F.softplus(self.raw_process_scale)

    @property
    def init_scale(self) -> torch.Tensor:
        return F.softplus(self.raw_init_scale)

    def _log_rates(self, x: torch.Tensor) -> torch.Tensor:
        """(..., frames, nodes, d) -> (..., frames, nodes)"""
        return (torch.einsum("...nd,nd->...n", x, self.spike_weight) + self.spike_bias).clamp(max=_MAX_LOG_RATE)

    def _behavior_mean(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Standardised behaviour from states and a readout: states (..., frames, nodes, d) and
        one readout (nodes, dims, d) -> (..., frames, dims); or states (..., draws, trials,
        frames, nodes, d) and a readout per draw (draws, nodes, dims, d) -> (..., draws, trials,
        frames, dims)."""
        if weights.ndim == 3:
            return torch.einsum("...nd,nkd->...k", x, weights) + self.behavior_bias
        return torch.einsum("...sbtnd,snkd->...sbtk", x, weights) + self.behavior_bias

    def _edge_prior(self) -> dist.Distribution:
        s = self.config["edge_prior_scale"]
        zero = torch.zeros((), device=self.device)
        return EDGE_PRIORS[self.config["edge_prior"]](zero, s)

    def _innovation_prior(self, shape: tuple[int, ...]) -> dist.Distribution:
        """``e(0) ~ N(m, s^2)``, ``e(t) ~ N(0, sigma^2)``: batch (trials,), event (frames, nodes, d)."""
        n_trials, frames, n, d = shape
        loc = torch.zeros(shape, device=self.device)
        loc[:, 0] = self.init_loc
        scale = torch.cat(
            [self.init_scale.expand(n_trials, 1, n, d), self.process_scale.expand(n_trials, frames - 1, n, d)], 1
        )
        return dist.Normal(loc, scale).to_event(3)

    def _states(self, innovations: torch.Tensor, inputs: torch.Tensor | None, edge_weight: torch.Tensor, **kw):
        """States (..., trials, frames, nodes, d) from innovations: ``x(0) = e(0)``,
        ``x(t+1) = f(x(t), u(t)) + e(t+1)``; ``kw``: interventions of :func:`probtwin.nn.graph.rollout`."""
        x0 = innovations[..., 0, :, :]
        return rollout(self.dynamics, x0, inputs, self.edge_index, edge_weight, innovations, self.edge_attr, **kw)

    def _intervention_sites(self, frames: int) -> tuple[torch.Tensor, dict]:
        """Where queries intervene, by ``poutine.do``: ``edge_gate`` (edges,) multiplies the edge
        weights (0 cuts an edge); units with ``silenced`` (units,) = 1 are held at ``clamp``
        (units, d) at every frame (a lesion); ``drive`` (frames, units, d) is added to the states
        (a stimulation). As the model writes them they change nothing."""
        n, d = self.specs[0].n_neurons, self.latent_dim
        zeros = torch.zeros((), device=self.device)
        gate = pyro.deterministic("edge_gate", (zeros + 1).expand(self.edge_index.shape[1]), event_dim=1)
        silenced = pyro.deterministic("silenced", zeros.expand(n), event_dim=1)
        clamp = pyro.deterministic("clamp", zeros.expand(n, d), event_dim=2)
        drive = pyro.deterministic("drive", zeros.expand(frames, n, d), event_dim=3)
        return gate, {"silenced": silenced > 0, "clamp": clamp, "drive": drive}

    def model(self, batch: dict) -> None:
        y = batch["responses"]
        n_trials, frames, n = y.shape
        w = pyro.sample("edge_weights", self._edge_prior().expand([self.edge_index.shape[1]]).to_event(1))
        w = _per_draw(w, 1)
        if self.n_behavior:
            tau = F.softplus(self.raw_behavior_tau)[:, None, None]
            prior = dist.Normal(torch.zeros((), device=y.device), tau)
            readout = pyro.sample("behavior_weights", prior.expand([n, self.n_behavior, self.latent_dim]).to_event(3))
            readout = _per_draw(readout, 3)
        gate, lesion = self._intervention_sites(frames)
        size = batch["n_total"] or n_trials
        with pyro.plate("trials", size, subsample=batch["index"], dim=-1):
            e = pyro.sample("innovations", self._innovation_prior((n_trials, frames, n, self.latent_dim)))
            x = self._states(e, batch.get("stimuli"), w[..., None, :] * gate, **lesion)  # a draw's weights: all trials
            x = pyro.deterministic("states", x, event_dim=3)  # the nodes' states, for queries to read
            rates = torch.exp(self._log_rates(x))
            simulate = batch.get("simulate") is not None  # synthetic trials: nothing observed
            pyro.sample(
                "responses", self.noise[0].likelihood.distribution(rates).to_event(2), obs=None if simulate else y
            )
            if self.n_behavior:  # observed when the batch has it; decoded (sampled) otherwise
                mean = self._behavior_mean(x, readout)
                with pyro.poutine.scale(scale=self.config["behavior_weight"]):
                    fn = self.behavior_likelihood.distribution(mean).to_event(2)
                    pyro.sample("behavior", fn, obs=None if simulate else batch.get("behavior"))

    def _innovation_posterior(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        y = batch["responses"]
        observed = batch.get("observed")
        if observed is None:
            observed = torch.ones(y.shape[0], y.shape[-1], dtype=torch.bool, device=y.device)
        return self.encoder(y, observed, batch.get("stimuli"))

    def guide(self, batch: dict) -> None:
        pyro.sample("edge_weights", dist.Normal(self.edge_loc, F.softplus(self.raw_edge_scale)).to_event(1))
        if self.n_behavior:
            scale = F.softplus(self.raw_behavior_scale)
            pyro.sample("behavior_weights", dist.Normal(self.behavior_loc, scale).to_event(3))
        simulate = batch.get("simulate")  # synthetic trials (sample): None, "posterior" or "prior"
        if simulate == "prior":  # a wholly synthetic trial: the model's prior draws the innovations
            return
        loc, scale = self._innovation_posterior(batch)
        if simulate == "posterior":  # the first frame's state inferred, then the prior's fresh process noise
            prior = self._innovation_prior(tuple(loc.shape)).base_dist
            first = torch.arange(loc.shape[1], device=loc.device)[:, None, None] == 0
            loc, scale = torch.where(first, loc, prior.loc), torch.where(first, scale, prior.scale)
        with pyro.plate("trials", batch["n_total"] or len(loc), subsample=batch["index"], dim=-1):
            pyro.sample("innovations", dist.Normal(loc, scale).to_event(3))

    def batch_terms(self, batch: dict):
        if self.training and self.config["input_dropout"] > 0:
            y = batch["responses"]
            keep = torch.rand(y.shape[0], y.shape[-1], device=y.device) >= self.config["input_dropout"]
            batch = {**batch, "observed": keep}
        return super().batch_terms(batch)

    def validation_score(self) -> float:
        """With ``validation="elbo"``, the local ELBO per observed value of the validation trials,
        ``log p(y, v, e) - log q(e)`` from the model's and guide's traces at one seeded draw of
        the innovations, the edge weights and readout at their posterior means
        (:func:`probtwin.infer.local_elbo`); with ``"behavior"``, the R^2 (mean over dims) of the
        posterior mean behaviour decoded from the validation trials' spikes
        (:meth:`decode_behavior`, ``VALIDATION_DRAWS`` seeded draws)."""
        rec = self.recordings[0]
        part = rec.split("validation" if np.any(rec.tiers == "validation") else "train")
        if self.config["validation"] == "behavior":
            return float(self._decoded_r2(part, VALIDATION_DRAWS, 0)[0].mean())
        means = {name: value[0] for name, value in self._draws(0, None).items()}
        total, count = 0.0, 0
        with seeded(0, self.device):
            for _, batch in self._trial_batches(part, self._per_trial(part, 1)):
                value, n = local_elbo(self.model, self.guide, (batch,), means)
                total, count = total + value, count + n
        return total / count

    # ------------------------------------------------------------------ posterior draws

    def _draws(self, k: int, num_samples: int | None) -> dict:
        """Draws (num_samples, ...) of the edge weights and behaviour readout; None: the means."""
        post = {"edge_weights": (self.edge_loc, F.softplus(self.raw_edge_scale))}
        if self.n_behavior:
            post["behavior_weights"] = (self.behavior_loc, F.softplus(self.raw_behavior_scale))
        if num_samples is None:
            return {name: loc[None].detach() for name, (loc, _) in post.items()}
        out = {}
        for name, (loc, scale) in post.items():
            eps = torch.randn((num_samples, *loc.shape), device=loc.device)
            out[name] = (loc + scale * eps).detach()
        return out
