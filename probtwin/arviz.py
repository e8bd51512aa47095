"""Export of a model's posterior to ArviZ ``InferenceData``, from one pass of the query engine:
:func:`inference_data` for any model, and the twins' ``to_arviz``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer import query as q
from probtwin.infer import seeded

__all__ = ["ArvizExport", "inference_data", "posterior_arrays"]


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
    everything = {**readers, "posterior": q.global_sites(query)}
    keyed = ((k, *chunk) for k, chunk in enumerate(chunks))
    for k, out in q.run(query, keyed, num_samples, everything, local="prior"):  # held-out: predictive
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


def posterior_arrays(draws: dict, site_dims: dict) -> tuple[dict, dict]:
    """Posterior draws (draws, ...) as ArviZ arrays (1, draws, ...) and their dimension names
    (``site_dims[name]``; default: neurons first)."""
    posterior, dims = {}, {}
    for name, value in draws.items():
        value = value.detach().cpu().numpy()[None]
        default = ("neuron", *(f"{name}_dim_{j}" for j in range(value.ndim - 3)))
        posterior[name] = value
        dims[name] = list(site_dims.get(name, default))
    return posterior, dims


class ArvizExport:
    """Mixin of the stimulus-response twins: ``to_arviz`` from one pass of the query engine."""

    site_dims: dict[str, tuple[str, ...]] = {}  # names of each posterior site's dimensions

    @torch.no_grad()
    def to_arviz(
        self, rec: Recording, tier: str | None = "test", num_samples: int = 200, seed: int = 0, session: Any = None
    ):
        """The posterior and its predictions on a recording's trials as ArviZ ``InferenceData``.

        Parameters
        ----------
        rec : Recording
        tier : str or None
            Which trials (None: all).
        num_samples : int
            Posterior draws (one chain).
        seed : int
        session : optional

        Returns
        -------
        arviz.InferenceData
            ``posterior``: the per-neuron sites (``position``, ``weights``, ``bias``, ...), dims
            (chain, draw, neuron, ...), neuron ids as coordinates; ``posterior_predictive`` and
            ``observed_data``: ``responses`` (trial, neuron), per-frame (trial, frame, neuron);
            ``log_likelihood``: ``responses``, each neuron's pointwise log density per draw
            (chain, draw, trial, [frame,] neuron), its
            latent state integrated out, so that ``arviz.loo`` scores trial x neuron
            observations. The core and other point estimates are left out (with a whole-twin
            posterior, each draw's members differ in them: the draws are the mixture's).
        """
        import arviz as az

        part = rec.split(tier) if tier is not None else rec
        k, stimuli, behavior, gaze = self._inputs(part, session)
        y = self._check_responses(k, part)
        if part.padded:
            expected = "trials of equal length (pointwise scores of NaN-padded frames are undefined)"
            raise DataError("rec", expected, f"trials of {part.frame_counts.min()} to {part.n_frames} frames")
        site = f"responses_{k}"
        predictive = np.empty((num_samples, *y.shape), np.float32)
        pointwise = np.empty((num_samples, *y.shape), np.float32)
        fn = q.distribution(site)

        def log_density(trace, extra) -> torch.Tensor:  # under each member's parameters
            return fn(trace, ()).marginal().log_prob(extra[0])

        log_density.site, log_density.needs_value = site, False
        readers = {"draw": q.draw(site), "pointwise": log_density, "posterior": q.global_sites(self.query())}
        with seeded(seed, self.device):
            chunks = self._run(
                k, stimuli, behavior, gaze, num_samples, readers, extra=lambda sl, _: (self._tensor(y[sl]),)
            )
            for sl, _, res in chunks:
                predictive[:, sl] = res["draw"].cpu().numpy()
                pointwise[:, sl] = res["pointwise"].cpu().numpy()
                draws = res["posterior"]  # the same global draws in every chunk
        draws = {name.removesuffix(f"_{k}"): value for name, value in draws.items()}
        ids = np.asarray(self.specs[k].neuron_ids)
        coords = {"neuron": ids, "trial": np.asarray(part.trial_index)}
        posterior, dims = posterior_arrays(draws, self.site_dims)
        dims["responses"] = ["trial", "neuron"]
        if y.ndim == 3:  # per-frame responses
            coords["frame"] = np.arange(y.shape[1])
            dims["responses"] = ["trial", "frame", "neuron"]
        return az.from_dict(
            posterior=posterior,
            posterior_predictive={"responses": predictive[None]},
            observed_data={"responses": y},
            log_likelihood={"responses": pointwise[None]},
            coords=coords,
            dims=dims,
            attrs={"twin": type(self).__name__, "session": self.specs[k].name, "tier": str(tier)},
        )
