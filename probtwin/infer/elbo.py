"""The evidence lower bound, split into its expected log-likelihood, KL and prior-factor terms.

For a model with latent sites z and observed sites y, and a mean-field guide q:

    ELBO = E_q[log p(y | z)] + sum_factors - KL(q(z) || p(z))

The expectation is a one-draw Monte Carlo estimate (reparameterised); the KL is analytic where
``kl_divergence`` knows the pair of distributions and a one-draw estimate elsewhere. Site scales
(e.g. from a subsampled plate) are applied, so a minibatch gives an unbiased estimate of the full
data's bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.distributions import Unit
from pyro.distributions.kl import kl_divergence
from pyro.poutine.util import site_is_subsample

__all__ = ["ElboTerms", "elbo_terms", "local_elbo"]


@dataclass
class ElboTerms:
    """One estimate of the bound's terms (scalars, differentiable)."""

    log_likelihood: torch.Tensor
    kl: torch.Tensor
    factor: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        return self.log_likelihood + self.factor - self.kl

    @property
    def loss(self) -> torch.Tensor:
        """The negative ELBO, to minimise."""
        return -self.elbo

    def __add__(self, other: ElboTerms) -> ElboTerms:
        """The terms of two independent parts of one model (e.g. two sessions' minibatches)."""
        return ElboTerms(self.log_likelihood + other.log_likelihood, self.kl + other.kl, self.factor + other.factor)


def _scaled_sum(value: torch.Tensor, site: dict) -> torch.Tensor:
    mask = site.get("mask")
    if mask is not None and mask is not True:
        value = value * mask
    return (value * site["scale"]).sum()


def elbo_terms(model: Callable, guide: Callable, *args, **kwargs) -> ElboTerms:
    """Trace the guide, replay the model on its draws, and return the bound's terms.

    Parameters
    ----------
    model, guide : callable
        Pyro programs taking the same arguments.
    *args, **kwargs
        Passed to both.

    Returns
    -------
    ElboTerms
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    zero = torch.zeros(())
    log_likelihood, kl, factor = zero, zero, zero
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site) or _is_deterministic(site):
            continue
        fn = site["fn"]
        if site["is_observed"]:
            term = _scaled_sum(fn.log_prob(site["value"]), site)
            if _is_factor(fn):
                factor = factor + term
            else:
                log_likelihood = log_likelihood + term
            continue
        q = guide_trace.nodes[name]["fn"]
        try:
            divergence = kl_divergence(q, fn)
        except NotImplementedError:
            value = site["value"]
            divergence = q.log_prob(value) - fn.log_prob(value)
        kl = kl + _scaled_sum(divergence, site)
    return ElboTerms(log_likelihood, kl, factor)


def _is_factor(fn) -> bool:
    return isinstance(fn, Unit) or isinstance(getattr(fn, "base_dist", None), Unit)


def _is_deterministic(site: dict) -> bool:
    """A ``pyro.deterministic`` record: a value for queries to read, no term of the bound."""
    return bool(site.get("infer", {}).get("_deterministic"))


def local_elbo(model: Callable, guide: Callable, args: tuple, fixed: dict[str, torch.Tensor]) -> tuple[float, int]:
    """The bound of the local variables with the global ones fixed: ``log p(y, z | theta) -
    log q(z | y)`` at one draw of the guide's local sites ``z``, ``theta`` the ``fixed`` values
    (e.g. posterior means), unscaled; and how many values are observed.

    A held-out score of a model with per-trial latents (validation of its fit), computed from
    the model's and guide's traces: the sites are neither rescaled by their plates nor tempered
    by ``poutine.scale``.

    Returns
    -------
    total : float
        Nats, summed over the data in ``args``.
    count : int
        Observed values scored (excluding ``pyro.factor`` terms).
    """
    guide_trace = poutine.trace(poutine.condition(guide, data=fixed)).get_trace(*args)
    conditioned = poutine.condition(model, data=fixed)
    model_trace = poutine.trace(poutine.replay(conditioned, trace=guide_trace)).get_trace(*args)
    total, count = torch.zeros(()), 0
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or name in fixed or site_is_subsample(site):
            continue
        if _is_factor(site["fn"]) or _is_deterministic(site):
            continue
        total = total + site["fn"].log_prob(site["value"]).sum().cpu()
        if site["is_observed"]:
            count += site["value"].numel()
        else:
            q = guide_trace.nodes[name]
            total = total - q["fn"].log_prob(q["value"]).sum().cpu()
    return float(total), count
