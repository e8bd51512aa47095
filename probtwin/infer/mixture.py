"""Posterior draws and mixtures of posteriors: what the query engine counts, subsets and joins.

The global draws of a query are a trace of :func:`probtwin.infer.query.posterior_draws`; for a
mixture posterior (:attr:`probtwin.infer.query.Query.components`), a :class:`MixtureDraws`, one
trace per component. A mixture's draws are stratified: of ``S`` draws, component ``m`` takes
``S // K`` (one more for the first ``S % K``), and :func:`over_components` runs a function under
each component with its draws and joins the results along the draws dimension. No neuroscience.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from pyro import poutine

if TYPE_CHECKING:
    from probtwin.infer.query import Query

__all__ = ["MixtureDraws", "num_draws", "over_components", "take_draws"]


class MixtureDraws(list):
    """Global draws of a mixture posterior: per component, a trace of :func:`posterior_draws`
    (None for a component without draws), in the components' order."""


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


def _joined(query: Query, parts: list) -> Any:
    return MixtureDraws(parts) if query.components else parts[0]


def _counts(query: Query, num_samples: int | None, parts: list, given: bool) -> list[int]:
    """Draws per component: as many as its draws hold (none where ``given`` draws leave it out),
    else its stratified share of ``num_samples``."""
    k = len(parts)
    if given:
        return [0 if part is None else _single_num_draws(query, part) for part in parts]
    return [0 if num_samples is None else num_samples // k + (m < num_samples % k) for m in range(k)]


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
    results, out = [], []
    for within, part, n in zip(query.components or [_plain], parts, counts, strict=True):
        if n == 0:
            out.append(part)
            continue
        value, drawn = within(lambda part=part, n=n: fn(part, n))
        results.append(value)
        out.append(drawn)
    return _cat(results, dim), _joined(query, out)


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
    for part in _parts(query, draws):
        n = 0 if part is None else _single_num_draws(query, part)
        inside = index[(index >= start) & (index < start + n)] - start
        out.append(_single_take(query, part, inside) if len(inside) else None)
        start += n
    return out
