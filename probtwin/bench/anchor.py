"""The field's anchor for image twins: a point-estimate Sensorium 2022 baseline, written from its
published description (Willeke et al. 2022; Lurz et al. 2021), in plain PyTorch.

- Core: 4 layers, a 9 x 9 input convolution, 7 x 7 depth-separable hidden convolutions, 64
  channels, batch norm and ELU (:class:`probtwin.nn.ConvCore`).
- Readout: a Gaussian readout per neuron. Its position is sampled from ``N(mu_i, sigma_i^2)``
  while training and read at ``mu_i`` at test, and its feature weights carry an L1 penalty. With
  cortical coordinates, ``mu_i`` comes from an MLP of them (the grid predictor).
- Output ``ELU + 1``; Poisson loss; Laplace smoothness penalty on the first layer's kernels.
- Adam; validation correlation every epoch; learning rate times 0.3 after ``patience`` epochs
  without improvement (best weights restored), three times, then stop.

It sees what the twin sees on the real image sets: the images, standardised on the train tier,
and the responses. Behaviour enters the core as channels when the recording has it; gaze is not
used.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from probtwin import metrics
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer import seeded
from probtwin.nn import ConvCore, readout_response
from probtwin.nn.readout import PositionPredictor
from probtwin.twins.likelihoods import inverse_link, link

__all__ = ["SensoriumBaseline", "fit_anchor", "train_point_estimate"]


class SensoriumBaseline(nn.Module):
    """Core and Gaussian readout of one session, point estimates.

    Shapes
    ------
    images (batch, channels, H, W) -> mean responses (batch, neurons)
    """

    def __init__(
        self,
        in_channels: int,
        n_neurons: int,
        mean_response: torch.Tensor,
        coordinates: torch.Tensor | None = None,
        hidden_channels: int = 64,
        layers: int = 4,
        init_mu_range: float = 0.3,
        init_sigma: float = 0.1,
        core: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.core = ConvCore(in_channels, hidden_channels, layers, 9, 7) if core is None else core
        self.mu = nn.Parameter((2 * torch.rand(n_neurons, 2) - 1) * init_mu_range)
        self.log_sigma = nn.Parameter(torch.full((n_neurons, 2), float(np.log(init_sigma))))
        self.weights = nn.Parameter(torch.randn(n_neurons, hidden_channels) / hidden_channels)
        self.bias = nn.Parameter(inverse_link(mean_response, "elu", "poisson"))  # ELU + 1 at the mean response
        self.grid = PositionPredictor(coordinates.shape[1]) if coordinates is not None else None
        self.register_buffer("coordinates", coordinates)

    def positions(self) -> torch.Tensor:
        mu = self.mu if self.grid is None else self.grid(self.coordinates)
        if self.training:
            mu = mu + torch.exp(self.log_sigma) * torch.randn_like(mu)
        return mu.clamp(-1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        eta = readout_response(self.core(images), self.positions(), self.weights, self.bias)
        return link(eta, "elu", "poisson")


def _arrays(rec: Recording) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.asarray(rec.stimuli, dtype=np.float32)
    if x.ndim != 4:
        raise DataError("stimuli", "images (trials, channels, height, width)", f"shape {x.shape}")
    if rec.behavior is not None:
        b = np.asarray(rec.behavior, dtype=np.float32)
        b = (b - b[rec.tiers == "train"].mean(0)) / (b[rec.tiers == "train"].std(0) + 1e-8)
        x = np.concatenate([x, np.broadcast_to(b[:, :, None, None], (len(x), b.shape[1], *x.shape[2:]))], axis=1)
    train = x[rec.tiers == "train"]
    x = (x - train.mean((0, 2, 3), keepdims=True)) / (train.std((0, 2, 3), keepdims=True) + 1e-8)
    return torch.as_tensor(x), torch.as_tensor(np.asarray(rec.responses, dtype=np.float32))


def _correlation(model: SensoriumBaseline, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    return float(np.nanmean(metrics.single_trial_correlation(y.numpy(), pred.numpy())))


def train_point_estimate(
    model: SensoriumBaseline,
    steps,
    validate,
    lr: float,
    max_epochs: int,
    patience: int,
    lr_decays: int,
    gamma_input: float,
    gamma_readout: float,
    time_limit: float | None,
    start: float,
) -> tuple[float, int]:
    """The baselines' training loop: Adam on the Poisson loss plus the Laplace penalty of the
    first layer and L1 on the readout weights; the validation score every epoch; after
    ``patience`` epochs without improvement the best weights are restored and the learning rate
    multiplied by 0.3, ``lr_decays`` times, then training stops. The model ends in its best
    state.

    ``steps(epoch)`` yields ``(rate, responses, scale)`` per step: the model's predicted rates, the
    responses they predict and the loss's scale. Returns the best validation score and the
    epochs run.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best, state, since, decays, epochs = -np.inf, None, 0, 0, 0
    while epochs < max_epochs:
        model.train()
        for rate, y, scale in steps(epochs):
            loss = scale * (rate - y * torch.log(rate)).sum()  # summed over trials (frames) and neurons
            loss = loss + gamma_input * model.core.laplace_penalty() + gamma_readout * model.weights.abs().sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epochs += 1
        score = validate()
        if score > best:
            best, state, since = score, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            since += 1
        if since >= patience:  # restore the best weights, decay the learning rate, or stop
            model.load_state_dict(state)
            if decays == lr_decays:
                break
            decays, since = decays + 1, 0
            for group in optimizer.param_groups:
                group["lr"] *= 0.3
        if time_limit is not None and time.perf_counter() - start > time_limit:
            break
    model.load_state_dict(state)
    return best, epochs


def fit_anchor(
    rec: Recording,
    hidden_channels: int = 64,
    layers: int = 4,
    lr: float = 0.009,
    batch_size: int = 128,
    max_epochs: int = 200,
    patience: int = 5,
    lr_decays: int = 3,
    gamma_input: float = 6.3831,
    gamma_readout: float = 0.0076,
    time_limit: float | None = 900.0,
    seed: int = 0,
) -> dict:
    """Train the Sensorium 2022 baseline on the train tier (early stopping on the validation tier)
    and score the test tier.

    Returns
    -------
    dict
        ``single_trial_correlation`` (test), ``validation_correlation`` (best), ``epochs``,
        ``fit_seconds``, ``model``.
    """
    for tier in ("train", "validation", "test"):
        if not np.any(rec.tiers == tier):
            raise DataError("tiers", "train, validation and test trials", f"no {tier!r} trials")
    x, y = _arrays(rec)
    tiers = np.asarray(rec.tiers)
    train = torch.as_tensor(np.flatnonzero(tiers == "train"))
    valid, test = (torch.as_tensor(tiers == t) for t in ("validation", "test"))
    coords = rec.neuron_coords
    if coords is not None:
        c = np.asarray(coords, dtype=np.float32)
        coords = torch.as_tensor((c - c.mean(0)) / (c.std(0) + 1e-8))
    start = time.perf_counter()
    with seeded(seed):
        model = SensoriumBaseline(x.shape[1], y.shape[1], y[train].mean(0), coords, hidden_channels, layers)
        scale = float(np.sqrt(len(train) / batch_size))  # the loss scaled as the reference trainer does

        def steps(epoch: int):
            for batch in torch.randperm(len(train)).split(batch_size):
                rows = train[batch]
                yield model(x[rows]), y[rows], scale

        best, epochs = train_point_estimate(
            model,
            steps,
            lambda: _correlation(model, x[valid], y[valid], batch_size),
            lr,
            max_epochs,
            patience,
            lr_decays,
            gamma_input,
            gamma_readout,
            time_limit,
            start,
        )
    return {
        "single_trial_correlation": _correlation(model, x[test], y[test], batch_size),
        "validation_correlation": best,
        "epochs": epochs,
        "fit_seconds": time.perf_counter() - start,
        "model": model,
    }
