"""The query engine: every posterior query runs the model itself under Pyro's effect handlers.

A model is written once, for fitting; this module asks it questions. For ``num_samples``
posterior draws at once, the guide is traced inside a plate of draws (left of the model's own
plates, so that every site gains a leading draws dimension), and the model is replayed on the
guide's draws (``poutine.replay``). What a query wants is then read off the model's trace at an
observation site, whose distribution object carries the answer:

=============================  ===================================================================
reader                         read off the observation site's distribution ``p(y | draw)``
=============================  ===================================================================
:func:`mean`                   ``fn.mean`` per draw (the mean response; per-trial latents the
                               distribution marginalises stay integrated out)
:func:`draw`                   the site's value: sampled (noise included) where the chunk holds
                               no data for it, ``fn.sample()`` where it does
:func:`pointwise`              ``fn.log_prob(y)`` of each scalar observation: ``fn.marginal()``
                               for a distribution with an event (each element's marginal)
:func:`log_prob`               ``fn.log_prob(y)`` of each data point's event, per draw
:func:`conditional_mean`       ``fn.conditional(observed, y).mean``: the rest given the observed
                               elements of the event
:func:`global_sites`           the global sites' draws (the posterior of the parameters)
=============================  ===================================================================

The readers live in :mod:`probtwin.infer.readers` and are re-exported here.

:func:`run` traces each chunk of data once and applies every reader asked for (one pass serves
an evaluation's several figures); :func:`predict`, :func:`sample`, :func:`pointwise_log_prob`,
:func:`log_predictive`, :func:`given` and :func:`intervene` are the one-reader shortcuts, which
concatenate the chunks. Interventions are ``poutine.do`` on model sites, replayed on the same
guide draws as the intact model.

Data come in chunks along the data plate (trials): the guide's global sites are drawn once, in
the first chunk, and replayed into every later chunk, so that draw ``s`` is the same parameter
draw on every trial, whatever the chunking. Sites inside a data plate (per-trial latents) are
drawn in each chunk: from the guide where it samples them (it has the chunk's data to infer
them from), else from the model's prior. Seeding is the caller's (:func:`probtwin.infer.seeded`).

A posterior can be a **mixture** of components (:attr:`Query.components`; the bookkeeping in
:mod:`probtwin.infer.mixture`): the members of a deep ensemble, draws of SWAG, each a whole set of
the model's parameters with its own guide.
Draws are then stratified: of ``S`` draws, component ``m`` takes ``S // K`` (one more for the
first ``S % K``), run under its own parameters, and every result is the components' results
joined along the draws dimension; the global draws of a mixture are a :class:`MixtureDraws`,
one trace per component. Every function here takes either kind of query.

Nothing here knows what the model describes: the engine sees a model, a guide, their
arguments, the names of the data plates and of the observation site.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from probtwin.infer.mixture import (
    COMBINATIONS,
    MixtureDraws,
    combine,
    num_draws,
    over_components,
    take_draws,
)
from probtwin.infer.readers import (
    Reader,
    _site,
    conditional_mean,
    distribution,
    draw,
    global_sites,
    log_prob,
    mean,
    observed,
    pointwise,
)

__all__ = [
    "MixtureDraws",
    "Query",
    "collect",
    "conditional_mean",
    "distribution",
    "draw",
    "given",
    "global_sites",
    "intervene",
    "interventions",
    "log_predictive",
    "log_prob",
    "mean",
    "num_draws",
    "observed",
    "over_components",
    "pointwise",
    "pointwise_log_prob",
    "posterior_draws",
    "posterior_trace",
    "predict",
    "run",
    "sample",
    "take_draws",
]

DRAWS_PLATE = "posterior_draws"
INTERVENTIONS_PLATE = "interventions"


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
    components : sequence of callable, optional
        A posterior that is an equal-weight mixture: per component, a function that calls a
        thunk (no arguments) under that component's parameters and returns its result. Empty:
        one posterior, the model's and guide's own parameters.
    combination : {"mixture", "student"}
        How the components' draws of a quantity of the parameters combine
        (:mod:`probtwin.infer.mixture`): as drawn, or as K independent fits with the truth one
        more (Student-t between them).
    """

    model: Callable
    guide: Callable
    max_plate_nesting: int
    data_plates: Collection[str]
    components: Sequence[Callable[[Callable[[], Any]], Any]] = ()
    combination: str = "mixture"

    def __post_init__(self) -> None:
        if self.combination not in COMBINATIONS:
            raise ValueError(f"combination: expected one of {COMBINATIONS}, found {self.combination!r}")

    def is_local(self, site: dict) -> bool:
        """Whether a site lies inside a data plate (a per-trial latent or an observation)."""
        return any(frame.name in self.data_plates for frame in site["cond_indep_stack"])


# ---------------------------------------------------------------------- tracing


class _Unsampled(Messenger):
    """Leaves the named unobserved sites undrawn (a zero-stride placeholder as their value): a
    query that reads only their distribution (a mean, a conditional) does not pay for a draw."""

    def __init__(self, sites: Collection[str]) -> None:
        super().__init__()
        self.sites = set(sites)

    def _pyro_sample(self, msg: dict) -> None:
        if msg["name"] in self.sites and not msg["is_observed"] and msg["value"] is None:
            fn = msg["fn"]
            msg["value"] = torch.zeros((), device=_device_of(fn)).expand(fn.shape())


def _device_of(fn) -> torch.device:
    """The device of a distribution's parameters (looking into wrapped distributions)."""
    for value in vars(fn).values():
        if isinstance(value, torch.Tensor):
            return value.device
    for value in vars(fn).values():
        if isinstance(value, torch.distributions.Distribution):
            return _device_of(value)
    raise ValueError(f"cannot tell the device of {type(fn).__name__}: no tensor among its attributes")


def _global_part(query: Query, trace: poutine.Trace) -> poutine.Trace:
    kept = poutine.Trace()
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site) and not query.is_local(site):
            kept.add_node(name, **site)
    return kept


def _draws_plate(query: Query, num_samples: int) -> pyro.plate:
    return pyro.plate(DRAWS_PLATE, num_samples, dim=-(query.max_plate_nesting + 1))


def _guide_trace(query: Query, args: tuple, global_draws: poutine.Trace | None) -> tuple[poutine.Trace, poutine.Trace]:
    """The guide's draws of a chunk (global sites replayed from ``global_draws`` when given)."""
    guide = query.guide if global_draws is None else poutine.replay(query.guide, trace=global_draws)
    trace = poutine.trace(guide).get_trace(*args)
    return trace, global_draws if global_draws is not None else _global_part(query, trace)


def posterior_draws(query: Query, args: tuple, num_samples: int | None) -> poutine.Trace | MixtureDraws:
    """The guide's draws of the global sites, ``num_samples`` at once, to hand to
    :func:`posterior_trace`, :func:`run` or :func:`collect` (the same draws for several queries).

    Parameters
    ----------
    args : tuple
        The guide's arguments (any chunk: only its global sites are kept).
    num_samples : int or None
        None: one "draw" at the posterior means, each site's value the mean of its guide
        distribution (a plug-in estimate); for a mixture, one such draw per component.
    """

    def one(_, n: int) -> tuple[None, poutine.Trace]:
        with _draws_plate(query, n):
            draws = _global_part(query, poutine.trace(query.guide).get_trace(*args))
        if num_samples is None:
            for site in draws.nodes.values():
                site["value"] = site["fn"].mean.expand_as(site["value"])
        return None, draws

    return over_components(query, None, one, max(1, len(query.components)) if num_samples is None else num_samples)[1]


def _model_trace(
    query: Query,
    args: tuple,
    guide_trace: poutine.Trace,
    interventions: dict | None,
    stacked: int | None = None,
    intact: poutine.Trace | None = None,
) -> poutine.Trace:
    """The model replayed on the guide's draws, under ``poutine.do`` of ``interventions``; with
    ``stacked``, each value (stacked, the site's value...) goes to the interventions' plate, left
    of the draws, its dimensions placed by the site in the ``intact`` trace."""
    model = poutine.replay(query.model, trace=guide_trace)
    if not interventions:
        return poutine.trace(model).get_trace(*args)
    data = {}
    for name, value in interventions.items():
        if stacked is not None:
            site = _site(intact, name)
            batch = value.dim() - 1 - site["fn"].event_dim  # the site's plates the value holds
            value = value.reshape(stacked, *[1] * (query.max_plate_nesting + 1 - batch), *value.shape[1:])
        if name in guide_trace.nodes:  # a value for a drawn site is set in every draw
            drawn = guide_trace.nodes[name]["value"]
            value = value.expand(*value.shape[: max(0, value.dim() - drawn.dim())], *drawn.shape)
        data[name] = value
    model = poutine.do(model, data=data)
    plate = (
        nullcontext()
        if stacked is None
        else pyro.plate(INTERVENTIONS_PLATE, stacked, dim=-(query.max_plate_nesting + 2))
    )
    with plate:
        return poutine.trace(model).get_trace(*args)


def posterior_trace(
    query: Query,
    args: tuple,
    num_samples: int | None,
    global_draws: poutine.Trace | None = None,
    interventions: dict[str, torch.Tensor] | None = None,
    unsampled: Collection[str] = (),
    local: str = "guide",
) -> tuple[poutine.Trace, poutine.Trace]:
    """Trace the model on ``num_samples`` posterior draws at once.

    Parameters
    ----------
    query : Query
    args : tuple
        The model's and guide's arguments (one chunk).
    num_samples : int or None
        Draws (None: as many as ``global_draws`` holds).
    global_draws : pyro.poutine.Trace, optional
        The global sites of an earlier call (the first chunk) or of :func:`posterior_draws`:
        replayed, not drawn anew.
    interventions : dict, optional
        ``poutine.do`` values of model sites.
    unsampled : collection of str
        Unobserved sites not to draw (their distribution is read, not their value).
    local : {"guide", "prior"}
        Where the per-trial latents come from: the guide, given the chunk's data (smoothing:
        the data are what the query conditions on), or the model's prior (prediction: held-out
        data are scored, not conditioned on). A mixture's components are traced one at a
        time (:func:`over_components`).

    Returns
    -------
    model_trace : pyro.poutine.Trace
        Every site with a leading draws dimension (num_samples, ...).
    global_draws : pyro.poutine.Trace
        The global sites, to pass to the next chunk.
    """
    if local not in ("guide", "prior"):
        raise ValueError(f"local: expected 'guide' or 'prior', found {local!r}")
    if query.components:
        raise ValueError("posterior_trace of a mixture: trace each component through over_components")
    return _posterior_trace(query, args, num_samples, global_draws, interventions, unsampled, local)


def _posterior_trace(query, args, num_samples, global_draws, interventions, unsampled, local):
    if num_samples is None:
        num_samples = num_draws(query, global_draws)
    with _Unsampled(unsampled), _draws_plate(query, num_samples):  # outermost: sees the expanded site
        guide_trace, global_draws = _guide_trace(query, args, global_draws)
        replayed = guide_trace if local == "guide" else global_draws
        return _model_trace(query, args, replayed, interventions), global_draws


def run(
    query: Query,
    chunks: Iterable[tuple],
    num_samples: int,
    readers: dict[str, Reader],
    interventions: dict[str, torch.Tensor] | None = None,
    local: str = "guide",
    global_draws: poutine.Trace | None = None,
) -> Iterator[tuple[Any, dict[str, torch.Tensor]]]:
    """Trace each chunk once and apply every reader to it.

    Parameters
    ----------
    query : Query
    chunks : iterable of tuple
        ``(key, args, *extra)`` per chunk: the caller's key (e.g. where the chunk's trials go),
        the model's arguments, then what the readers take (e.g. the observed mask and values of
        :func:`conditional_mean`). Chunks are read lazily, one at a time.
    num_samples : int
    readers : dict of str to callable
        ``reader(model_trace, extra)`` -> tensor; from :func:`mean`, :func:`draw`, ...
    interventions : dict, optional
        ``poutine.do`` values of model sites.
    local : {"guide", "prior"}
        Where per-trial latents come from (:func:`posterior_trace`).
    global_draws : pyro.poutine.Trace, optional
        The global sites' draws (:func:`posterior_draws`); default: drawn in the first chunk.

    Yields
    ------
    key, dict of str to torch.Tensor
        The chunk's key and each reader's result on it, (num_samples, chunk, ...) for the
        per-draw readers.
    """
    drawn = {getattr(r, "site", None) for r in readers.values() if getattr(r, "needs_value", True)}
    unsampled = {r.site for r in readers.values() if not getattr(r, "needs_value", True)} - drawn
    if local not in ("guide", "prior"):
        raise ValueError(f"local: expected 'guide' or 'prior', found {local!r}")
    draws = global_draws
    for key, args, *extra in chunks:

        def one(part, n, args=args, extra=tuple(extra)):
            trace, new_draws = _posterior_trace(query, args, n, part, interventions, unsampled, local)
            return {name: read(trace, extra) for name, read in readers.items()}, new_draws

        # one chunk's working set at a time (the caller drops ``out`` before the next)
        out, draws = over_components(query, draws, one, num_samples)
        for name, read in readers.items():
            if getattr(read, "parametric", False):
                out[name] = combine(query, draws, out[name])
        yield key, out
        del out


def collect(
    query: Query,
    chunks: Iterable[tuple],
    num_samples: int,
    reader: Reader,
    n: int,
    select: torch.Tensor | None = None,
    local: str = "guide",
    global_draws: poutine.Trace | None = None,
) -> np.ndarray:
    """One reader's draws over all the data, gathered chunk by chunk into host memory.

    Parameters
    ----------
    query : Query
    chunks : iterable of tuple
        As in :func:`run`, the key the positions (chunk,) or slice of the chunk's data points
        among the ``n``.
    num_samples, reader
        As in :func:`run`.
    n : int
        Data points in all.
    select : torch.Tensor, optional
        Indices along the last axis to keep (e.g. the neurons predicted).
    local : {"guide", "prior"}
        Where per-trial latents come from (:func:`posterior_trace`).
    global_draws : pyro.poutine.Trace, optional
        As in :func:`run`.

    Returns
    -------
    numpy.ndarray, float32, shape (num_samples, n, ...)
    """
    out = None
    for index, res in run(query, chunks, num_samples, {"x": reader}, local=local, global_draws=global_draws):
        value = res.pop("x")
        if select is not None:
            value = value[..., select]
        if out is None:  # as many draws as came (given draws may hold another number)
            out = np.empty((value.shape[0], n, *value.shape[2:]), dtype=np.float32)
        out[:, index] = value.cpu().numpy()
        del value
    return out


# ---------------------------------------------------------------------- one-reader shortcuts


def _concatenated(query: Query, chunks: Iterable[tuple], num_samples: int, reader: Reader, **kw: Any) -> torch.Tensor:
    """The shortcuts' chunks are ``(args, *extra)``, in order: one reader's results joined."""
    keyed = ((None, *chunk) for chunk in chunks)
    return torch.cat([out["x"] for _, out in run(query, keyed, num_samples, {"x": reader}, **kw)], dim=1)


def predict(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """Posterior draws of the mean of an observation site, (num_samples, data, ...)."""
    return _concatenated(query, chunks, num_samples, mean(site))


def sample(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """Posterior predictive draws of an observation site, noise included, (num_samples, data, ...);
    per-trial latents from the prior (data in the chunks are not conditioned on)."""
    return _concatenated(query, chunks, num_samples, draw(site), local="prior")


def pointwise_log_prob(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """Log density of each scalar observation under each draw, (num_samples, data, ...)."""
    return _concatenated(query, chunks, num_samples, pointwise(site))


def log_predictive(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """``log (1/S) sum_s p(y_t | draw s)`` of each data point's observation (its event jointly), (data,):
    a held-out score, per-trial latents drawn from the prior (not inferred from ``y_t``)."""
    lp = _concatenated(query, chunks, num_samples, log_prob(site), local="prior")
    return torch.logsumexp(lp, 0) - math.log(num_samples)


def given(query: Query, chunks: Iterable[tuple], site: str, num_samples: int) -> torch.Tensor:
    """Posterior draws of the conditional mean of every element given the observed ones,
    (num_samples, data, event); ``chunks`` yield ``(args, observed, values)``."""
    return _concatenated(query, chunks, num_samples, conditional_mean(site))


def interventions(
    query: Query,
    chunks: Iterable[tuple],
    site: str,
    num_samples: int,
    data: dict[str, torch.Tensor],
    stacked: int | None = None,
) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
    """Per chunk ``(key, args, *extra)`` as in :func:`run`: posterior draws of an observation
    site's mean, intact and under ``poutine.do``.

    Both runs share the guide's draws (global and local), so that their difference is each
    draw's causal effect; sites the model draws from its prior are drawn anew in each run. A
    value given for a site the guide draws is set in every draw (broadcast to the draws' shape).

    Parameters
    ----------
    stacked : int, optional
        Run this many interventions at once: every value in ``data`` is then (stacked, the
        site's value without the draws...), and the intervened model runs in a plate of
        interventions left of the draws, so its results gain a leading dimension.

    Yields
    ------
    key, intact, intervened : the chunk's key, then tensors of shape (num_samples, chunk, ...),
        the intervened one (stacked, num_samples, chunk, ...) with ``stacked``
    """
    draws, read = None, mean(site)
    for key, args, *extra in chunks:

        def one(part, n, args=args, extra=tuple(extra)):
            with _Unsampled({site}), _draws_plate(query, n):
                guide_trace, drawn = _guide_trace(query, args, part)
                intact_trace = _model_trace(query, args, guide_trace, None)
                forced = read(_model_trace(query, args, guide_trace, data, stacked, intact_trace), extra)
                return (read(intact_trace, extra), forced), drawn

        (intact, forced), draws = over_components(query, draws, one, num_samples, (0, 0 if stacked is None else 1))
        yield key, combine(query, draws, intact), combine(query, draws, forced, 0 if stacked is None else 1)
        del intact, forced


def intervene(
    query: Query,
    chunks: Iterable[tuple],
    site: str,
    num_samples: int,
    data: dict[str, torch.Tensor],
    stacked: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`interventions` over all chunks ``(args, *extra)``, concatenated: (num_samples, data,
    ...) each, the intervened ones (stacked, num_samples, data, ...) with ``stacked``."""
    triples = list(interventions(query, ((None, *chunk) for chunk in chunks), site, num_samples, data, stacked))
    return torch.cat([t[1] for t in triples], dim=1), torch.cat([t[2] for t in triples], dim=1 + (stacked is not None))
