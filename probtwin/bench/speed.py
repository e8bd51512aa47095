"""Speed: an SVI step against a plain PyTorch step of the same network; prediction memory."""

from __future__ import annotations

import resource
import time

import numpy as np
import torch
from torch import nn

from probtwin.data.batching import batch_arrays
from probtwin.nn import Modulator, Shifter
from probtwin.nn.readout import GaussianReadout
from probtwin.twins.image import ImageTwin

__all__ = ["plain_step_time", "svi_step_time", "predict_memory", "side_by_side"]


class _PointEstimateNetwork(nn.Module):
    """The twin's network with a point-estimate readout: what a plain PyTorch model trains."""

    def __init__(self, twin: ImageTwin) -> None:
        super().__init__()
        r = twin.readouts[0]
        n, channels = r.weight_loc.shape
        self.core = type(twin.core)(
            twin.core.in_channels,
            channels,
            len(twin.core.blocks),
            twin.config["input_kernel"],
            twin.config["hidden_kernel"],
        )
        self.readout = GaussianReadout(n, channels)
        self.shifter = Shifter() if r.shifter is not None else None
        self.modulator = Modulator(r.modulator.embed[0].in_features, n) if r.modulator is not None else None
        self.behavior_in_core = twin.config["behavior_in_core"]
        self.config = twin.config

    def regularizer(self, batch: dict) -> torch.Tensor:
        """The same weight decay and Laplace smoothness penalty as the twin's core prior, per batch."""
        sq = sum(p.pow(2).sum() for name, p in self.core.named_parameters() if name.endswith("weight"))
        return 0.5 * sq / self.config["core_prior_scale"] ** 2 * len(batch["index"]) / batch["n_total"] + (
            self.config["laplace_weight"] * self.core.laplace_penalty()
        )

    def forward(self, batch: dict) -> torch.Tensor:
        x = batch["stimuli"]
        if self.behavior_in_core:
            x = torch.cat([x, batch["behavior"][:, :, None, None].expand(-1, -1, *x.shape[-2:])], 1)
        shift = self.shifter(batch["gaze"]) if self.shifter is not None else None
        mean = nn.functional.elu(self.readout(self.core(x), shift)) + 1.0
        return mean * self.modulator(batch["behavior"]) if self.modulator is not None else mean


def _batch(twin: ImageTwin, batch_size: int) -> dict:
    train = twin.recordings[0].split("train")
    idx = np.arange(min(batch_size, train.n_trials))
    return twin._batch(0, batch_arrays(train, idx), idx, train.n_trials)


def _step_times(loss_fn, module: nn.Module, batch: dict, steps: int) -> list[float]:
    """Seconds of each of ``steps`` steps: loss, backward, gradient clipping, Adam."""
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    module.train()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 10.0)
        opt.step()
        _sync(batch)
        times.append(time.perf_counter() - start)
    return times


def svi_step_time(twin: ImageTwin, batch: dict, steps: int) -> list[float]:
    """Seconds of each SVI step (negative ELBO, backward, clipping, Adam) on one batch."""
    return _step_times(lambda b: twin.loss_terms([b]).loss, twin, batch, steps)


def plain_step_time(net: nn.Module, batch: dict, steps: int) -> list[float]:
    """Seconds of each plain step of the point-estimate network: Poisson loss plus the same core
    regularisers (weight decay, Laplace penalty), backward, clipping, Adam."""

    def loss(b: dict) -> torch.Tensor:
        nll = nn.functional.poisson_nll_loss(net(b), b["responses"], log_input=False, reduction="sum")
        return nll + net.regularizer(b)

    return _step_times(loss, net, batch, steps)


def _sync(batch: dict) -> None:
    if batch["responses"].is_cuda:
        torch.cuda.synchronize()


def side_by_side(twin: ImageTwin, batch_size: int = 64, steps: int = 20, rounds: int = 3) -> dict:
    """Median SVI and plain step times, interleaved in rounds on the same batch and device."""
    net = _PointEstimateNetwork(twin).to(twin.device)
    batch = _batch(twin, batch_size)
    svi_step_time(twin, batch, 3)  # warm-up
    plain_step_time(net, batch, 3)
    svi, plain = [], []
    for _ in range(rounds):
        svi += svi_step_time(twin, batch, steps)
        plain += plain_step_time(net, batch, steps)
    return {
        "svi": float(np.median(svi)),
        "plain": float(np.median(plain)),
        "ratio": float(np.median(svi) / np.median(plain)),
        "batch_size": batch_size,
        "steps": steps * rounds,
    }


def predict_memory(twin: ImageTwin, stimuli: np.ndarray, num_samples: int = 100) -> dict:
    """Peak resident memory added by ``twin.predict`` and the size of its output, in MiB."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    pred = twin.predict(stimuli, num_samples=num_samples)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "output_mib": pred.samples.nbytes / 2**20,
        "peak_added_mib": after - before,
        "shape": pred.samples.shape,
    }
