"""Export of a model's posterior to ArviZ ``InferenceData``, from one pass of the query engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from probtwin.infer.query import Query, inference_draws

__all__ = ["inference_data"]


def inference_data(
    query: Query,
    chunks: Any,
    site: str,
    num_samples: int,
    dims: dict[str, list[str]] | None = None,
    coords: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
):
    """The posterior, posterior predictive, pointwise log-likelihood and observed data of a model
    as ArviZ ``InferenceData`` (one chain), all from the same posterior draws.

    Parameters
    ----------
    query : probtwin.infer.query.Query
    chunks : iterable of (args,)
        The model's arguments chunk by chunk, with the observed data.
    site : str
        The observation site; its name is the variable's name in the predictive groups.
    num_samples : int
    dims, coords : dict, optional
        ArviZ dimension names of each variable (without chain and draw) and their coordinates.
    attrs : dict, optional

    Returns
    -------
    arviz.InferenceData
        ``posterior``: the guide's global sites; ``posterior_predictive``, ``log_likelihood``
        (each scalar observation's marginal, for PSIS-LOO) and ``observed_data``: ``site``.
    """
    import arviz as az

    out = inference_draws(query, chunks, site, num_samples)

    def chain(x):
        return x.detach().cpu().numpy()[None]

    return az.from_dict(
        posterior={name: chain(v) for name, v in out["posterior"].items()},
        posterior_predictive={site: chain(out["predictive"])},
        log_likelihood={site: chain(out["log_likelihood"])},
        observed_data={site: np.asarray(out["observed"].detach().cpu())},
        dims=dims,
        coords=coords,
        attrs=attrs,
    )
