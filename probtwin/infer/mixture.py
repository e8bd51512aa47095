"""Posterior draws and mixtures of posteriors: what the query engine counts, subsets and joins.

The global draws of a query are a trace of :func:`probtwin.infer.query.posterior_draws`; for a
mixture posterior (:attr:`probtwin.infer.query.Query.components`), a :class:`MixtureDraws`, one
trace per component. A mixture's draws are stratified: of ``S`` draws, component ``m`` takes
``S // K`` (one more for the first ``S % K``), and :func:`over_components` runs a function under
each component with its draws and joins the results along the draws dimension.

How the components' draws of a quantity combine (:attr:`probtwin.infer.query.Query.combination`):

``"mixture"``
    As drawn: component ``m``'s draws are its own. Right where the components are draws of one
    posterior (SWAG's).
``"student"``
    The components are ``K`` independent fits (a deep ensemble, a bagged posterior), and the
    quantity's true value is taken as exchangeable with them: one more fit. With the fits' means
    ``Q_m`` Normal of unknown mean and variance, the predictive of one more is Student-t,
    ``Qbar + sqrt(1 + 1/K) s T``, ``s^2`` the fits' sample variance and ``T ~ t_{K-1}``: a
    mixture of K components understates how far the truth may lie from them when K is small
    (its 90% interval is at most the fits' range). Draw ``d`` of component ``m`` becomes

        Qbar + g_d sum_j w_dj (Q_j - Qbar) + (x_d - Q_m),

    ``w_dj ~ Normal(0, (1 + 1/K) / (K - 1))``, ``g_d = sqrt((K - 1) / chi2_{K-1})``: the t spread
    between the fits (a coherent function: every element of a draw takes the same weights) with
    each draw's own spread within its component kept. Only quantities of the parameters alone
    are combined (a mean response, a conditional mean: readers with ``parametric``); a draw
    with observation noise, a log density stay as drawn. The weights are drawn once, with the
    global draws (:attr:`MixtureDraws.weights`), and replayed with them.

No neuroscience.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from pyro import poutine

if TYPE_CHECKING:
    from probtwin.infer.query import Query

__all__ = [
    "COMBINATIONS",
    "MixtureDraws",
    "combine",
    "combine_blocks",
    "member_weights",
    "num_draws",
    "over_components",
    "stratified_counts",
    "take_draws",
]

COMBINATIONS = ("mixture", "student")
"""How a mixture's components' draws of a quantity combine (see the module's description)."""


class MixtureDraws(list):
    """Global draws of a mixture posterior: per component, a trace of :func:`posterior_draws`
    (None for a component without draws), in the components' order.

    Attributes
    ----------
    weights : torch.Tensor, shape (draws, components), or None
        Under ``combination="student"``: each draw's weights on the components' deviations from
        their mean (:func:`member_weights`); None: the draws stay as drawn.
    """

    weights: torch.Tensor | None = None


def member_weights(num_samples: int, k: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Weights (num_samples, k) under which a combination of ``k`` fits' deviations from their
    mean is Student-t: ``g_d w_dj``, ``w_dj ~ Normal(0, (1 + 1/k) / (k - 1))``, ``g_d =
    sqrt((k - 1) / chi2_{k-1})`` (torch's generator: seed it for the same weights); in antithetic
    pairs (draws ``2j`` and ``2j + 1`` take ``w`` and ``-w``), so that the mean over the draws
    is the fits' mean exactly, not a noisy estimate (the t with few degrees of freedom has heavy
    tails)."""
    if k < 2:
        raise ValueError(f"member_weights: at least 2 components, found {k}")
    half = (num_samples + 1) // 2
    w = torch.randn(half, k, device=device) * math.sqrt((1 + 1 / k) / (k - 1))
    chi2 = torch.distributions.Chi2(torch.tensor(float(k - 1), device=device)).sample((half,))
    w = w * ((k - 1) / chi2).sqrt()[:, None]
    return torch.stack([w, -w], 1).reshape(-1, k)[:num_samples]  # antithetic pairs


def combine(query: Query, draws: Any, value: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """A quantity's draws (``dim`` the draws, in the components' order) combined under the
    draws' :attr:`MixtureDraws.weights` (see the module's ``"student"``); as they are where
    there are no weights."""
    weights = getattr(draws, "weights", None)
    if weights is None:
        return value
    counts = [0 if part is None else _single_num_draws(query, part) for part in draws]
    return combine_blocks(value, counts, weights, dim)


def combine_blocks(value: torch.Tensor, counts: list[int], weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Draws of a quantity, ``counts[m]`` consecutive draws from component ``m`` along ``dim``,
    combined under ``weights`` (draws, components) of :func:`member_weights`: ``Qbar + sum_j
    w_dj (Q_j - Qbar) + (x_d - Q_m)`` (the module's ``"student"``), computed in float64."""
    if any(n == 0 for n in counts):
        raise ValueError(f"combining {len(counts)} components: every one needs draws, found {counts}")
    x = value.movedim(dim, 0).double()  # t weights of few fits can be large: pairs cancel in double
    if x.shape[0] != sum(counts) or tuple(weights.shape) != (sum(counts), len(counts)):
        raise ValueError(f"combining {counts} draws: {x.shape[0]} values, weights {tuple(weights.shape)}")
    blocks = x.split(counts)
    means = torch.stack([b.mean(0) for b in blocks])  # (K, ...)
    grand = means.mean(0)
    between = torch.tensordot(weights.to(x.device, x.dtype), means - grand, dims=([1], [0]))  # (draws, ...)
    within = torch.cat([b - m for b, m in zip(blocks, means, strict=True)])
    return (grand + between + within).to(value.dtype).movedim(0, dim)


def stratified_counts(num_samples: int, k: int) -> list[int]:
    """Draws per component when ``num_samples`` draws are stratified over ``k`` components:
    ``num_samples // k``, one more for the first ``num_samples % k``."""
    return [num_samples // k + (m < num_samples % k) for m in range(k)]


def _plain(thunk: Callable[[], Any]) -> Any:
    return thunk()


def _parts(query: Query, draws: Any) -> list:
    """Per component: its draws (a trace, or None: not drawn yet)."""
    if not query.components:
        return [draws]
    if draws is None:
        return [None] * len(query.components)
    if not isinstance(draws, MixtureDraws) or len(draws) != len(query.components):
        raise ValueError(f"draws of a mixture of {len(query.components)}: expected MixtureDraws, found {type(draws)}")
    return list(draws)


def _joined(query: Query, parts: list, weights: torch.Tensor | None = None) -> Any:
    if not query.components:
        return parts[0]
    out = MixtureDraws(parts)
    out.weights = weights
    return out


def _counts(query: Query, num_samples: int | None, parts: list, given: bool) -> list[int]:
    """Draws per component: as many as its draws hold (none where ``given`` draws leave it out),
    else its stratified share of ``num_samples``."""
    k = len(parts)
    if given:
        return [0 if part is None else _single_num_draws(query, part) for part in parts]
    return [0] * k if num_samples is None else stratified_counts(num_samples, k)


def _cat(results: list, dim: int | tuple = 0) -> Any:
    """The components' results joined along the draws dimension (tensors, or dicts/tuples of
    them; ``dim`` a tuple: one per item of a tuple)."""
    first = results[0] if results else None
    if len(results) <= 1 or first is None:
        return first
    if isinstance(first, dict):
        return {key: _cat([r[key] for r in results], dim) for key in first}
    if isinstance(first, tuple):
        dims = dim if isinstance(dim, tuple) else (dim,) * len(first)
        return tuple(_cat([r[i] for r in results], dims[i]) for i in range(len(first)))
    return torch.cat(results, dim=dim)


def over_components(
    query: Query,
    draws: Any,
    fn: Callable[[Any, int], tuple[Any, Any]],
    num_samples: int | None = None,
    dim: int | tuple = 0,
) -> tuple[Any, Any]:
    """``fn(draws, n)`` under each component, with that component's global draws (a trace) and
    their number ``n``; where ``draws`` is None, ``fn(None, n)`` with the component's stratified
    share ``n`` of ``num_samples``. ``fn`` returns ``(result, its global draws)``. With no
    components: ``fn`` once, under the model's own parameters.

    Returns
    -------
    result, draws : the components' results joined along ``dim`` (tensors, dicts or tuples of
        them), and the global draws (a :class:`MixtureDraws` for a mixture)
    """
    parts = _parts(query, draws)
    counts = _counts(query, num_samples, parts, given=draws is not None)
    student = draws is None and query.combination == "student" and num_samples is not None and len(parts) > 1
    if student and min(counts) == 0:
        k = len(parts)
        raise ValueError(f"combination 'student' of {k} components: at least {k} draws, found {num_samples}")
    results, out = [], []
    for within, part, n in zip(query.components or [_plain], parts, counts, strict=True):
        if n == 0:
            out.append(part)
            continue
        value, drawn = within(lambda part=part, n=n: fn(part, n))
        results.append(value)
        out.append(drawn)
    # drawn after the components' draws: the same draws as the plain mixture's, then combined
    weights = member_weights(sum(counts), len(parts)) if student else getattr(draws, "weights", None)
    return _cat(results, dim), _joined(query, out, weights)


def _draws_dim(query: Query, site: dict) -> int:
    return site["value"].dim() - site["fn"].event_dim - (query.max_plate_nesting + 1)


def _single_num_draws(query: Query, draws: poutine.Trace) -> int:
    site = next(iter(draws.nodes.values()))
    return site["value"].shape[_draws_dim(query, site)]


def num_draws(query: Query, draws: poutine.Trace | MixtureDraws) -> int:
    """How many draws a trace of :func:`posterior_draws` holds (all components' for a mixture)."""
    return sum(_single_num_draws(query, part) for part in _parts(query, draws) if part is not None)


def _single_take(query: Query, draws: poutine.Trace, index: torch.Tensor) -> poutine.Trace:
    out = poutine.Trace()
    for name, site in draws.nodes.items():
        value = site["value"].index_select(_draws_dim(query, site), index.to(site["value"].device))
        out.add_node(name, **{**site, "value": value})
    return out


def take_draws(query: Query, draws: poutine.Trace | MixtureDraws, index: torch.Tensor) -> poutine.Trace | MixtureDraws:
    """The draws at ``index`` (a subset, repeats allowed; for a mixture, in increasing order, so
    that the subset keeps the components' order) of a trace of :func:`posterior_draws`."""
    if not query.components:
        return _single_take(query, draws, index)
    if len(index) > 1 and bool((index[1:] < index[:-1]).any()):
        raise ValueError("take_draws of a mixture: the index must be in increasing order")
    out, start = MixtureDraws(), 0
    weights = getattr(draws, "weights", None)
    out.weights = None if weights is None else weights[index.to(weights.device)]
    for part in _parts(query, draws):
        n = 0 if part is None else _single_num_draws(query, part)
        inside = index[(index >= start) & (index < start + n)] - start
        out.append(_single_take(query, part, inside) if len(inside) else None)
        start += n
    return out
