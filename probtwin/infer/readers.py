"""Readers: what a query takes off the model's trace, mostly off an observation site's
distribution object ``p(y | draw)`` (see :mod:`probtwin.infer.query`). A reader is
``reader(model_trace, extra) -> tensor``, with ``.site`` (the site it reads), ``.needs_value``
(whether the site must be drawn, or only its distribution is read) and ``.parametric`` where its
result is a function of the parameters alone, no noise drawn (a mean): the draws a mixture
posterior's combination applies to (:mod:`probtwin.infer.mixture`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

if TYPE_CHECKING:
    from probtwin.infer.query import Query

__all__ = [
    "Reader",
    "conditional_mean",
    "distribution",
    "draw",
    "global_sites",
    "log_prob",
    "mean",
    "observed",
    "pointwise",
]

Reader = Callable[[poutine.Trace, tuple], torch.Tensor]


def _site(trace: poutine.Trace, name: str) -> dict:
    if name not in trace.nodes:
        sites = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
        raise KeyError(f"no site {name!r} in the model's trace (its sample sites: {sites})")
    return trace.nodes[name]


def _own_dims(site: dict, value: torch.Tensor, event_dim: int) -> torch.Tensor:
    """``value`` with the singleton dimensions of plates the site is not in dropped: (draws, the
    site's plates..., event)."""
    own = {frame.dim for frame in site["cond_indep_stack"]}  # the draws plate included
    batch_dims = value.dim() - event_dim
    return value[tuple(slice(None) if d in own else 0 for d in range(-batch_dims, 0))]


def mean(site: str) -> Reader:
    """Reader of the observation's mean per draw, ``fn.mean``."""

    def read(trace, extra):
        node = _site(trace, site)
        return _own_dims(node, node["fn"].mean, len(node["fn"].event_shape))

    read.site, read.needs_value, read.parametric = site, False, True
    return read


def draw(site: str) -> Reader:
    """Reader of a predictive draw of the site, noise included: its value where the model sampled
    it, a fresh ``fn.sample()`` where the chunk observed it."""

    def read(trace, extra):
        node = _site(trace, site)
        value = node["fn"].sample() if node["is_observed"] else node["value"]
        return _own_dims(node, value, len(node["fn"].event_shape))

    read.site, read.needs_value = site, True
    return read


def distribution(site: str) -> Reader:
    """Reader of the site's distribution object itself, batch (draws, ...): for estimators a
    model's observation defines beyond the readers here."""

    def read(trace, extra):
        return _site(trace, site)["fn"]

    read.site, read.needs_value = site, False
    return read


def observed(site: str) -> Reader:
    """Reader of the observed values of the site in the chunk, (data, ...)."""

    def read(trace, extra):
        node = _site(trace, site)
        if not node["is_observed"]:
            raise ValueError(f"site {site!r} is not observed in this chunk (pass the data)")
        return node["value"]

    read.site, read.needs_value = site, True
    return read


def pointwise(site: str) -> Reader:
    """Reader of each scalar observation's log density per draw: each element of a multivariate
    observation scored by its marginal (``fn.marginal()``), ArviZ's ``log_likelihood``."""

    def read(trace, extra):
        node = _site(trace, site)
        fn, event_dim = node["fn"], len(node["fn"].event_shape)
        if event_dim:  # each element's marginal: its own method, or the base of independent elements
            if hasattr(fn, "marginal"):
                fn = fn.marginal()
            elif isinstance(fn, torch.distributions.Independent):
                fn = fn.base_dist
            else:
                raise TypeError(f"site {site!r}: {type(fn).__name__} has an event but no marginal()")
        return _own_dims(node, fn.log_prob(node["value"]), event_dim)

    read.site, read.needs_value = site, True
    return read


def log_prob(site: str) -> Reader:
    """Reader of each data point's log density (its event jointly) per draw, (draws, data)."""

    def read(trace, extra):
        node = _site(trace, site)
        return _own_dims(node, node["fn"].log_prob(node["value"]), 0)

    read.site, read.needs_value = site, True
    return read


def conditional_mean(site: str) -> Reader:
    """Reader of the mean of every element of the event given the observed ones, per draw.

    The chunk's extra items are ``(observed, values)``: a boolean mask of the event's elements
    ((data, event) or (event,)) and the values (data, event) where observed. The observation's
    distribution conditions itself (``fn.conditional(observed, values)``).
    """

    def read(trace, extra):
        node = _site(trace, site)
        fn = node["fn"]
        if not hasattr(fn, "conditional"):
            raise TypeError(f"site {site!r}: {type(fn).__name__} has no conditional()")
        return _own_dims(node, fn.conditional(*extra).mean, len(fn.event_shape))

    read.site, read.needs_value, read.parametric = site, False, True
    return read


def global_sites(query: Query) -> Reader:
    """Reader of the draws of every global site of the guide that the model also has (the
    posterior of the parameters): a dict of (draws, the site's plates..., event)."""

    def read(trace, extra):
        out = {}
        for name, node in trace.nodes.items():
            if node["type"] == "sample" and not site_is_subsample(node) and not node["is_observed"]:
                if not query.is_local(node) and not name.endswith("__CF"):
                    out[name] = _own_dims(node, node["value"], len(node["fn"].event_shape))
        return out

    return read
