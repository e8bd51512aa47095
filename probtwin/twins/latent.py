"""The latent state of a twin whose noise model has one: each trial's posterior state and the
model's noise correlations."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probtwin.data.padding import recorded_frames
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer import query as q
from probtwin.twins.noise import NoiseModel, per_frame

__all__ = ["LatentStateQueries"]


class LatentStateQueries:
    """Mixin of the twins with a shared latent state (``noise="flow"``, ``"zero_inflated_flow"``,
    ``"latent"``): ``latent_state`` and ``noise_correlations``."""

    def _latent_noise(self, k: int) -> NoiseModel:
        noise = self.noise[k]
        if noise.rank == 0:
            raise DataError(
                "noise",
                "a twin with a latent state (noise='flow', 'zero_inflated_flow' or 'latent' with latent_rank > 0)",
                f"noise={self.config.get('noise', 'independent')!r}, latent_rank={noise.rank}",
            )
        return noise

    @torch.no_grad()
    def latent_state(
        self, rec: Recording, tier: str | None = "test", level: float = 0.9, session: Any = None
    ) -> dict[str, np.ndarray]:
        """Posterior of each trial's latent state ``h_t`` (each frame's, ``h_tf``) given the
        population's responses.

        Parameters
        ----------
        rec : Recording
        tier : str or None
            Which trials (None: all).
        level : float
            Central credible interval.

        Returns
        -------
        dict
            ``mean``, ``sd``, ``lower``, ``upper`` (trials, k) and ``trial_index`` (trials,), the
            rows in ``rec``; for responses per frame, each frame's state ``h_tf``: (trials,
            frames, k), NaN on a trial's padding frames. Flows: the exact Gaussian posterior;
            latent counts: the amortized guide. The latent axes are identified up to a rotation
            (as in factor analysis).
        """
        if not 0 < level < 1:
            raise DataError("level", "a probability in (0, 1)", repr(level))
        part = rec.split(tier) if tier is not None else rec
        k, stimuli, behavior, gaze = self._inputs(part, session)
        noise = self._latent_noise(k)
        y = self._check_responses(k, part)
        frames = y.ndim == 3
        recorded, held = recorded_frames(y)  # (trials, frames): padding frames False
        mean = np.empty((*y.shape[:-1], noise.rank))
        sd = np.empty_like(mean)
        point = self._posterior_draws(k, None)
        self.train(False)
        for sl, batch, _ in self._chunk_args(k, (stimuli, behavior, gaze), 1):
            loc = self._point_location(k, batch, point)
            if frames:
                b = per_frame(batch.get("behavior"), y.shape[1])
                mask = torch.as_tensor(recorded[sl], device=self.device)
                m, cov = noise.latent_posterior_frames(loc, self._tensor(held[sl]), None, b, mask)
            else:
                m, cov = noise.latent_posterior(loc, self._tensor(y[sl]), None, batch.get("behavior"))
            mean[sl] = m.cpu().numpy()
            sd[sl] = torch.diagonal(cov, dim1=-2, dim2=-1).sqrt().cpu().numpy()
        if recorded is not None:
            mean[~recorded], sd[~recorded] = np.nan, np.nan
        z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2)))
        return {"mean": mean, "sd": sd, "lower": mean - z * sd, "upper": mean + z * sd, "trial_index": part.trial_index}

    @torch.no_grad()
    def noise_correlations(
        self,
        x: np.ndarray | None = None,
        space: str | None = None,
        num_samples: int = 2000,
        seed: int = 0,
        session: Any = None,
    ) -> np.ndarray:
        """The model's noise correlations, (neurons, neurons), for one stimulus.

        Parameters
        ----------
        x : numpy.ndarray, shape (channels, height, width) or (1, channels, height, width)
            The stimulus (at the average behaviour and gaze); not needed in the latent space of a
            flow, where the covariance does not depend on the stimulus.
        space : {"latent", "response"}, optional
            ``"latent"``: the correlations of ``C C^T + diag(psi)``, the flow's Gaussian space
            (for latent counts, of the log rates, ``C C^T``); ``"response"``: the correlations of
            ``num_samples`` sampled population responses to ``x`` under the posterior-mean
            parameters. Default: ``"latent"`` for the flows, ``"response"`` otherwise.
        """
        k = self.session_index(session)
        noise = self.noise[k]
        space = space or ("latent" if noise.gaussian_space else "response")
        if space not in ("latent", "response"):
            raise DataError("space", "'latent' or 'response'", repr(space))
        if space == "latent":
            if not noise.gaussian_space:
                self._latent_noise(k)
            loadings, private = noise.covariance()
            cov = (loadings @ loadings.T + torch.diag(private)).double()
            sd = torch.sqrt(torch.diagonal(cov)).clamp_min(1e-12)
            return (cov / sd[:, None] / sd[None, :]).cpu().numpy()
        if x is None:
            raise DataError("x", "a stimulus for space='response'", "None")
        if num_samples < 2:
            raise DataError("num_samples", "at least 2 sampled populations", repr(num_samples))
        x = np.asarray(x, dtype=np.float32)
        x = x[None] if x.ndim == len(self.specs[k].stimulus_shape) else x
        if len(x) != 1:
            raise DataError("x", "one stimulus", f"{len(x)}")
        _, stimuli, behavior, gaze = self._inputs(x, k)
        repeat = np.zeros(num_samples, dtype=int)  # the stimulus as many trials: the model's own draws
        inputs = tuple(None if v is None else np.asarray(v)[repeat] for v in (stimuli, behavior, gaze))
        point = self._posterior_draws(k, None)
        samples = self._gather(k, inputs, 1, seed, q.draw(f"responses_{k}"), draws=point)[0].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.corrcoef(samples, rowvar=False)
