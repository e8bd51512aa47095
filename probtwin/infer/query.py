"""The query engine: every posterior query runs the model itself under Pyro's effect handlers.

A model is written once, for fitting; this module asks it questions. For ``num_samples``
posterior draws at once, the guide is traced inside a plate of draws (left of the model's own
plates, so that every site gains a leading draws dimension), and the model is replayed on the
guide's draws (``poutine.replay``). What a query wants is then read off the model's trace at an
observation site, whose distribution object carries the answer:

=============================  ===================================================================
query                          read off the observation site's distribution ``p(y | draw)``
=============================  ===================================================================
:func:`predict`                ``fn.mean`` per draw (the mean response; local latents the
                               distribution marginalises stay integrated out)
:func:`sample`                 ``fn.sample()`` per draw (observation noise included)
:func:`pointwise_log_prob`     ``fn.log_prob(y)`` of each scalar observation: ``fn.marginal()``
                               for a distribution with an event (each element's marginal)
:func:`log_predictive`         ``log mean_s p(y | draw s)`` of each data point's event
:func:`given`                  ``fn.conditional(observed, y)``: the distribution of the rest
                               given the observed elements of the event
:func:`intervene`              the same draws replayed into ``poutine.do(model, data=...)``
=============================  ===================================================================

Data come in chunks along the data plate (trials): the guide's global sites are drawn once, in
the first chunk, and replayed into every later chunk, so that draw ``s`` is the same parameter
draw on every trial, whatever the chunking. Sites inside a data plate (per-trial latents) are
drawn in each chunk: from the guide where it samples them (it has the chunk's data to infer
them from), else from the model's prior. Seeding is the caller's (:func:`probtwin.infer.seeded`).

Nothing here knows what the model describes: the engine sees a model, a guide, their
arguments, the names of the data plates and of the observation site.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

__all__ = [
    "Query",
    "given",
    "inference_draws",
    "intervene",
    "log_predictive",
    "pointwise_log_prob",
    "posterior_trace",
    "predict",
    "sample",
]

DRAWS_PLATE = "posterior_draws"


@dataclass
class Query:
    """What the engine needs of a model to query it.

    Attributes
    ----------
    model, guide : callable
        Pyro programs taking the same arguments (one chunk of data each).
    max_plate_nesting : int
        How many plates the model nests (the draws plate goes left of them).
    data_plates : collection of str
        Names of the plates over data points (trials): sites inside them are local.
    """

    model: Callable
    guide: Callable
    max_plate_nesting: int
    data_plates: Collection[str]

    def is_local(self, site: dict) -> bool:
        """Whether a site lies inside a data plate (a per-trial latent or an observation)."""
        return any(frame.name in self.data_plates for frame in site["cond_indep_stack"])


def _global_part(query: Query, trace: poutine.Trace) -> poutine.Trace:
    kept = poutine.Trace()
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site) and not query.is_local(site):
            kept.add_node(name, **site)
    return kept


def posterior_trace(
    query: Query,
    args: tuple,
    num_samples: int,
    global_draws: poutine.Trace | None = None,
    interventions: dict[str, torch.Tensor] | None = None,
) -> tuple[poutine.Trace, poutine.Trace]:
    """Trace the model on ``num_samples`` posterior draws at once.

    Parameters
    ----------
    query : Query
    args : tuple
        The model's and guide's arguments (one chunk).
    num_samples : int
    global_draws : pyro.poutine.Trace, optional
        The global sites of an earlier call (the first chunk): replayed, not drawn anew.
    interventions : dict, optional
        ``poutine.do`` values of model sites.

    Returns
    -------
    model_trace : pyro.poutine.Trace
        Every site with a leading draws dimension (num_samples, ...).
    global_draws : pyro.poutine.Trace
        The global sites, to pass to the next chunk.
    """
    with _draws_plate(query, num_samples):
        guide_trace, global_draws = _guide_trace(query, args, global_draws)
        return _model_trace(query, args, guide_trace, interventions), global_draws


def _draws_plate(query: Query, num_samples: int) -> pyro.plate:
    return pyro.plate(DRAWS_PLATE, num_samples, dim=-(query.max_plate_nesting + 1))


def _guide_trace(query: Query, args: tuple, global_draws: poutine.Trace | None) -> tuple[poutine.Trace, poutine.Trace]:
    """The guide's draws of a chunk (global sites replayed from ``global_draws`` when given)."""
    guide = query.guide if global_draws is None else poutine.replay(query.guide, trace=global_draws)
    trace = poutine.trace(guide).get_trace(*args)
    return trace, global_draws if global_draws is not None else _global_part(query, trace)


def _model_trace(query: Query, args: tuple, guide_trace: poutine.Trace, interventions: dict | None) -> poutine.Trace:
    model = poutine.replay(query.model, trace=guide_trace)
    if interventions:
        model = poutine.do(model, data=interventions)
    return poutine.trace(model).get_trace(*args)


def _site(trace: poutine.Trace, name: str) -> dict:
    if name not in trace.nodes:
        sites = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
        raise KeyError(f"no site {name!r} in the model's trace (its sample sites: {sites})")
    return trace.nodes[name]


def _chunked(query: Query, chunks: Iterable[tuple], num_samples: int, read: Callable, **kw: Any) -> torch.Tensor:
    """Apply ``read(model_trace, *extra)`` chunk by chunk; concatenate along the data axis (1)."""
    draws, parts = None, []
    for args, *extra in chunks:
        trace, draws = posterior_trace(query, args, num_samples, draws, **kw)
        parts.append(read(trace, *extra))
    return torch.cat(parts, dim=1)


def _draw_major(value: torch.Tensor, event_dim: int, nesting: int) -> torch.Tensor:
    """Drop the singleton plate dimensions between the draws and the data: (draws, data..., event)."""
    batch = value.shape[: value.dim() - event_dim]
    keep = batch[-(nesting + 1) :]
    return value.reshape(keep + value.shape[value.dim() - event_dim :])


def predict(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """Posterior draws of the mean of an observation site, (num_samples, data, ...).

    ``chunks`` yields ``(args,)`` tuples: the model's arguments for each chunk of data.
    """

    def read(trace):
        fn = _site(trace, site)["fn"]
        return _draw_major(fn.mean, len(fn.event_shape), query.max_plate_nesting)

    return _chunked(query, chunks, num_samples, read)


def sample(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """Posterior predictive draws of an observation site, noise included, (num_samples, data, ...).

    The model is run without the observed values (``chunks`` give arguments without them), so
    that the site is sampled.
    """

    def read(trace):
        node = _site(trace, site)
        return _draw_major(node["value"], len(node["fn"].event_shape), query.max_plate_nesting)

    return _chunked(query, chunks, num_samples, read)


def pointwise_log_prob(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """Log density of each scalar observation under each draw, (num_samples, data, ...).

    Each element of a multivariate observation is scored by its marginal (``fn.marginal()``):
    the ``log_likelihood`` group of ArviZ, for PSIS-LOO over scalar observations.
    """

    def read(trace):
        node = _site(trace, site)
        fn, event_dim = node["fn"], len(node["fn"].event_shape)
        if event_dim:
            if not hasattr(fn, "marginal"):
                raise TypeError(f"site {site!r}: {type(fn).__name__} has an event but no marginal()")
            fn = fn.marginal()
        return _draw_major(fn.log_prob(node["value"]), event_dim, query.max_plate_nesting)

    return _chunked(query, chunks, num_samples, read)


def log_predictive(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """``log (1/S) sum_s p(y_t | draw s)`` of each data point's observation (its event jointly), (data,)."""

    def read(trace):
        node = _site(trace, site)
        lp = node["fn"].log_prob(node["value"])
        return _draw_major(lp, 0, query.max_plate_nesting)

    lp = _chunked(query, chunks, num_samples, read)
    return torch.logsumexp(lp, 0) - math.log(num_samples)


def given(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """Posterior draws of the mean of the unobserved elements given the observed ones.

    ``chunks`` yields ``(args, observed, values)``: ``observed`` a boolean mask of the event's
    elements (data, event) or (event,), ``values`` (data, event) where observed (others
    ignored). The observation site's distribution conditions itself (``fn.conditional``).

    Returns
    -------
    torch.Tensor, shape (num_samples, data, event)
        The conditional mean of every element (the observed ones' equal their values in a
        distribution without private noise only; read the unobserved ones).
    """

    def read(trace, observed, values):
        fn = _site(trace, site)["fn"]
        if not hasattr(fn, "conditional"):
            raise TypeError(f"site {site!r}: {type(fn).__name__} has no conditional()")
        mean = fn.conditional(observed, values).mean
        return _draw_major(mean, len(fn.event_shape), query.max_plate_nesting)

    return _chunked(query, chunks, num_samples, read)


def intervene(
    query: Query, chunks: Iterable[tuple], site: str, num_samples: int, interventions: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior draws of an observation site's mean, intact and under ``poutine.do``.

    Both runs share the guide's draws (global and local), so that their difference is each
    draw's causal effect; sites the model draws from its prior are drawn anew in each run.

    Returns
    -------
    intact, intervened : torch.Tensor, shape (num_samples, data, ...)
    """
    draws, intact, intervened = None, [], []
    for (args,) in chunks:
        with _draws_plate(query, num_samples):
            guide_trace, draws = _guide_trace(query, args, draws)
            for out, data in ((intact, None), (intervened, interventions)):
                fn = _site(_model_trace(query, args, guide_trace, data), site)["fn"]
                out.append(_draw_major(fn.mean, len(fn.event_shape), query.max_plate_nesting))
    return torch.cat(intact, dim=1), torch.cat(intervened, dim=1)


def _site_value(site: dict) -> torch.Tensor:
    """A global site's draws, (draws, its own plates..., event): the singleton dimensions of
    plates the site is not in are dropped."""
    batch_dims = len(site["fn"].batch_shape)
    own = {frame.dim for frame in site["cond_indep_stack"]}  # the draws plate included
    return site["value"][tuple(slice(None) if d in own else 0 for d in range(-batch_dims, 0))]


def inference_draws(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> dict[str, Any]:
    """One pass over observed data for an ArviZ export: the same draws give all four groups.

    Returns
    -------
    dict
        ``posterior``: each global site's draws (num_samples, its plates..., event);
        ``predictive``: draws of the observation site, noise included (num_samples, data, ...);
        ``log_likelihood``: :func:`pointwise_log_prob` (num_samples, data, ...);
        ``observed``: the observed values (data, ...).
    """
    draws, predictive, pointwise, observed = None, [], [], []
    nesting = query.max_plate_nesting
    for (args,) in chunks:
        trace, draws = posterior_trace(query, args, num_samples, draws)
        node = _site(trace, site)
        fn, event_dim = node["fn"], len(node["fn"].event_shape)
        if not node["is_observed"]:
            raise ValueError(f"site {site!r} is not observed in the chunks given (pass the data)")
        predictive.append(_draw_major(fn.sample(), event_dim, nesting))
        marginal = fn.marginal() if event_dim else fn
        pointwise.append(_draw_major(marginal.log_prob(node["value"]), event_dim, nesting))
        observed.append(node["value"].reshape(predictive[-1].shape[1:]))
    posterior = {name: _site_value(s) for name, s in draws.nodes.items()}
    return {
        "posterior": posterior,
        "predictive": torch.cat(predictive, 1),
        "log_likelihood": torch.cat(pointwise, 1),
        "observed": torch.cat(observed, 0),
    }
