"""Tracing for the query engine: the guide's draws of a chunk, many at once inside a plate of
draws, and the model replayed on them (under ``poutine.do`` of interventions), as
:mod:`probtwin.infer.query` describes. No neuroscience.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import nullcontext
from typing import TYPE_CHECKING

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from probtwin.infer.mixture import MixtureDraws, num_draws, over_components
from probtwin.infer.readers import _site

if TYPE_CHECKING:
    from probtwin.infer.query import Query

__all__ = ["DRAWS_PLATE", "INTERVENTIONS_PLATE", "posterior_draws", "posterior_trace"]

DRAWS_PLATE = "posterior_draws"
"""The plate of posterior draws, left of the model's own plates."""
INTERVENTIONS_PLATE = "interventions"
"""The plate of stacked interventions, left of the draws."""


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
