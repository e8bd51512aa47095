"""Export of a model's posterior to ArviZ ``InferenceData``, from one pass of the query engine."""

from __future__ import annotations

from typing import Any

import torch

from probtwin.infer import query as q

__all__ = ["inference_data"]


def inference_data(
    query: q.Query,
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

    readers = {"predictive": q.draw(site), "log_likelihood": q.pointwise(site), "observed": q.observed(site)}
    posterior, parts = None, []
    for k, out in enumerate(q.run(query, chunks, num_samples, {**readers, "posterior": q.global_sites(query)})):
        posterior = out.pop("posterior") if k == 0 else posterior
        parts.append(out)

    def joined(name, axis=1):
        return torch.cat([p[name] for p in parts], dim=axis).detach().cpu().numpy()

    return az.from_dict(
        posterior={name: v.detach().cpu().numpy()[None] for name, v in posterior.items()},
        posterior_predictive={site: joined("predictive")[None]},
        log_likelihood={site: joined("log_likelihood")[None]},
        observed_data={site: joined("observed", axis=0)},
        dims=dims,
        coords=coords,
        attrs=attrs,
    )
