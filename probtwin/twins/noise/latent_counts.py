"""Spike counts with a shared latent state on the log rate, ``h_t`` a per-trial (per-frame, for
responses per frame) latent with an amortized guide."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.nn import functional as F

from probtwin.nn.mlp import mlp
from probtwin.twins.likelihoods import Likelihood
from probtwin.twins.low_rank import capacitance
from probtwin.twins.noise.base import QUADRATURE_NODES, NoiseModel, per_frame

__all__ = ["LatentCountNoise"]


class LatentCountNoise(NoiseModel):
    """Spike counts with a shared latent state on the log rate.

    ``y_ti ~ likelihood(l_ti exp(c_i . h_t - |c_i|^2 / 2))``, ``h_t ~ Normal(0, I_k)``: the
    ``-|c_i|^2 / 2`` keeps ``l_ti`` the mean response. The guide of ``h_t`` is an encoder
    (a two-layer perceptron) of the log responses relative to the prediction, and of behaviour.
    For responses per frame, each frame ``f`` of trial ``t`` has its own state ``h_tf``,
    independent over frames, and the encoder reads that frame's responses and behaviour.

    Parameters
    ----------
    likelihood : Likelihood
        Poisson or negative binomial.
    rank : int
    n_behavior : int
        Behavioural variables the encoder sees (0: none).
    hidden : int
        Width of the encoder.
    """

    log_likelihood_kind = "importance-weighted bound"
    elements = QUADRATURE_NODES  # the pointwise marginal's quadrature

    def __init__(self, likelihood: Likelihood, n_neurons: int, rank: int, n_behavior: int = 0, hidden: int = 128):
        super().__init__()
        self.likelihood = likelihood
        self.rank = rank
        self.n_behavior = n_behavior
        self.loadings = nn.Parameter(torch.randn(n_neurons, rank) * 0.05)
        self.register_buffer("log_scale", torch.ones(n_neurons))
        self.encoder = mlp(n_neurons + n_behavior, hidden, 2, 2 * rank)
        with torch.no_grad():  # start near the prior
            self.encoder[-1].weight.mul_(0.1)
            self.encoder[-1].bias.zero_()

    def initialize(self, stats: dict[str, np.ndarray], field: str) -> None:
        self.likelihood.check(float(np.min(stats["min"])), bool(np.any(stats["zeros"] > 0)), field)
        self.log_scale.copy_(torch.as_tensor(np.maximum(stats["log1p_std"], 1e-3), dtype=torch.float32))

    def covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loadings, torch.zeros_like(self.log_scale)

    def _rate(self, loc: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        c = self.loadings
        return loc.clamp_min(1e-8) * torch.exp(h @ c.T - 0.5 * (c**2).sum(-1))

    def _encode(self, center: torch.Tensor, y: torch.Tensor, behavior) -> tuple[torch.Tensor, torch.Tensor]:
        """The amortized guide ``q(h_t | y_t, b_t)``: mean and standard deviation, (..., trials, k)."""
        x = (torch.log1p(y) - torch.log1p(center.clamp_min(0.0))) / self.log_scale
        if self.n_behavior:
            x = torch.cat([x, behavior.expand(*x.shape[:-1], -1)], -1)
        out = self.encoder(x)
        return out[..., : self.rank], F.softplus(out[..., self.rank :]) + 1e-4

    def local_state(self, name: str, batch: dict, loc: torch.Tensor) -> torch.Tensor:
        """``h_t ~ Normal(0, I_k)``, the site ``latent_<session>``; per frame, ``h_tf``, (trials,
        frames, k), its frames in the event."""
        zeros = loc.new_zeros(*loc.shape[:-1], self.rank)
        event = 2 if batch.get("per_frame") else 1
        return pyro.sample(f"latent_{batch['session']}", dist.Normal(zeros, 1.0).to_event(event))

    def guide(self, name: str, batch: dict, center) -> None:
        """``q(h_t | y_t, b_t)``, where the batch has responses (else the prior draws ``h_t``).

        Per frame, ``q(h_tf | y_tf, b_tf)`` for each scored frame, scaled as the model scales the
        clip's frames (``likelihood_scale``); a padding frame (outside ``frame_mask``) keeps the
        prior, adding nothing to the bound."""
        y = batch.get("responses")
        if y is None:
            return
        k = batch["session"]
        frames = bool(batch.get("per_frame"))
        behavior = per_frame(batch.get("behavior"), y.shape[1]) if frames else batch.get("behavior")
        mean, sd = self._encode(center().detach(), y, behavior)
        mask = batch.get("frame_mask")
        if mask is not None:
            mean = torch.where(mask[..., None], mean, torch.zeros_like(mean))
            sd = torch.where(mask[..., None], sd, torch.ones_like(sd))
        plate = pyro.plate(f"trials_{k}", batch["n_total"], subsample=batch["index"], dim=-1)
        with plate, poutine.scale(scale=batch.get("likelihood_scale", 1.0)):
            pyro.sample(f"latent_{k}", dist.Normal(mean, sd).to_event(2 if frames else 1))

    def log_prob(self, loc, y, state=None):
        if state is None:
            raise ValueError("the latent count model scores responses given the latent state")
        return self.likelihood.distribution(self._rate(loc, state)).log_prob(y).sum(-1)

    def sample(self, loc: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        if state is None:
            state = torch.randn((*loc.shape[:-1], self.rank), dtype=loc.dtype, device=loc.device)
        return self.likelihood.distribution(self._rate(loc, state)).sample()

    def log_predictive(self, loc, y, center, behavior):
        """``log (1/S) sum_s p(y | theta_s, h_s) p(h_s) / q(h_s | y)`` with ``theta_s`` posterior
        draws and ``h_s`` from the amortized guide; its standard error by the delta method."""
        mean, sd = self._encode(center, y, behavior)
        eps = torch.randn((loc.shape[0], *mean.shape), dtype=loc.dtype, device=loc.device)
        h = mean + sd * eps
        log_w = (
            self.likelihood.distribution(self._rate(loc, h)).log_prob(y).sum(-1)
            + dist.Normal(0.0, 1.0).log_prob(h).sum(-1)
            - dist.Normal(mean, sd).log_prob(h).sum(-1)
        )
        s = log_w.shape[0]
        lp = torch.logsumexp(log_w, 0) - math.log(s)
        w = torch.exp(log_w - log_w.max(0).values)
        se = w.std(0) / (math.sqrt(s) * w.mean(0))
        return lp, se

    def pointwise_log_likelihood(self, loc, y):
        """Each neuron's marginal, ``log E_u p(y_i | l_i exp(u - s_i^2 / 2))`` with
        ``u = c_i . h ~ Normal(0, s_i^2)``, ``s_i = |c_i|``, by Gauss-Hermite quadrature."""
        x, w = np.polynomial.hermite.hermgauss(QUADRATURE_NODES)
        nodes = (-1,) + (1,) * loc.dim()  # the nodes before every axis of the locations
        x = torch.as_tensor(x, dtype=loc.dtype, device=loc.device).reshape(nodes)
        log_w = torch.as_tensor(np.log(w / np.sqrt(np.pi)), dtype=loc.dtype, device=loc.device).reshape(nodes)
        s2 = (self.loadings**2).sum(-1)
        rate = loc.clamp_min(1e-8) * torch.exp(torch.sqrt(2 * s2) * x - 0.5 * s2)  # (nodes, draws, trials, [frames,] N)
        lp = self.likelihood.distribution(rate).log_prob(y)
        return torch.logsumexp(lp + log_w, 0)

    def latent_posterior(self, loc, y, mask=None, behavior=None, iterations: int = 25):
        """The amortized guide for whole populations; with a ``mask`` (a subset of neurons), the
        Laplace approximation (Newton's method on the log-concave posterior)."""
        if mask is None:
            mean, sd = self._encode(loc, y, behavior)
            return mean, torch.diag_embed(sd**2)
        c = self.loadings
        obs = mask.to(loc.dtype).expand_as(loc)
        log_loc = torch.log(loc.clamp_min(1e-8)) - 0.5 * (c**2).sum(-1)
        h = loc.new_zeros(*loc.shape[:-1], self.rank)
        r = self.likelihood.total_count if self.likelihood.name == "negative_binomial" else None
        ones = torch.ones_like(c[:, 0])
        for step_number in range(iterations + 1):
            rate = torch.exp(log_loc + h @ c.T)
            if r is None:
                grad, weight = y - rate, rate
            else:
                grad = y - (y + r) * rate / (rate + r)
                weight = (y + r) * rate * r / (rate + r) ** 2
            hess = capacitance(c, ones, obs * weight)  # minus the Hessian of the log posterior
            if step_number == iterations:
                break
            step = torch.linalg.solve(hess, ((obs * grad) @ c - h).unsqueeze(-1)).squeeze(-1)
            h = h + step / step.norm(dim=-1, keepdim=True).clamp_min(1.0)  # steps of at most the prior's scale
        return h, torch.linalg.inv(hess)

    def conditional_mean(self, loc, mean, cov):
        c = self.loadings
        shared = torch.einsum("nk,...kl,nl->...n", c, cov, c)
        return loc * torch.exp(mean @ c.T + 0.5 * shared - 0.5 * (c**2).sum(-1))
