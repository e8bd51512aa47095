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

The readers live in :mod:`probtwin.infer.readers`, the tracing in :mod:`probtwin.infer.tracing`;
both are re-exported here.

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

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pyro import poutine

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
    conditional_mean,
    distribution,
    draw,
    global_sites,
    log_prob,
    mean,
    observed,
    pointwise,
)
from probtwin.infer.tracing import (
    _draws_plate,
    _guide_trace,
    _model_trace,
    _posterior_trace,
    _Unsampled,
    posterior_draws,
    posterior_trace,
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
    if not any(getattr(r, "parametric", False) for r in readers.values()):
        query = dataclasses.replace(query, combination="mixture")  # nothing to combine: as drawn
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
