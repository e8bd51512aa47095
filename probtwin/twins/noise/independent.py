"""Independent noise: responses independent given their means, ``y_ti ~ likelihood(l_ti)``."""

from __future__ import annotations

import math

import numpy as np
import pyro.distributions as dist
import torch

from probtwin.twins.likelihoods import Likelihood
from probtwin.twins.noise.base import NoiseModel

__all__ = ["IndependentNoise"]


class IndependentNoise(NoiseModel):
    """Responses independent given their means."""

    def __init__(self, likelihood: Likelihood) -> None:
        super().__init__()
        self.likelihood = likelihood

    def initialize(self, stats: dict[str, np.ndarray], field: str) -> None:
        self.likelihood.check(float(np.min(stats["min"])), bool(np.any(stats["zeros"] > 0)), field)
        self.likelihood.init_scale(stats["std"])

    def _dist(self, loc: torch.Tensor) -> dist.TorchDistribution:
        return self.likelihood.distribution(loc.clamp_min(1e-8) if self.likelihood.nonnegative else loc)

    def log_prob(self, loc, y, state=None):
        return self._dist(loc).log_prob(y).sum(-1)

    def sample(self, loc: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        return self._dist(loc).sample()

    def log_predictive(self, loc, y, center, behavior):
        lp = self._dist(loc).log_prob(y)
        return (torch.logsumexp(lp, 0) - math.log(loc.shape[0])).sum(-1), None

    def pointwise_log_likelihood(self, loc, y):
        return self._dist(loc).log_prob(y)
