"""One seeded path for every random draw: the global generator of the device the draws are made
on, seeded inside a context that leaves the caller's random state as it was.

Every query that draws (posterior draws, predictive noise, importance samples) runs under
:func:`seeded`, and draws with ``torch`` and Pyro's own samplers on its device, so that the same
seed on the same device gives the same numbers, and nothing is drawn on the CPU to be copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["rng_state", "seeded", "set_rng_state"]


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


@contextmanager
def seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Seed the generators of the CPU and of ``device`` for the block, then restore them.

    Parameters
    ----------
    seed : int
    device : str or torch.device
        The device the block draws on (its generator is seeded and restored too).

    Examples
    --------
    >>> with seeded(3):
    ...     a = torch.randn(2)
    >>> with seeded(3):
    ...     b = torch.randn(2)
    >>> bool(torch.equal(a, b))
    True
    """
    device = torch.device(device)
    devices = [_cuda_index(device)] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def rng_state(device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The random state of the CPU and, on CUDA, of ``device``: CPU byte tensors, to checkpoint."""
    device = torch.device(device)
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(_cuda_index(device)).cpu()
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: str | torch.device = "cpu") -> None:
    """Restore a state from :func:`rng_state` (loaded onto any device: the states are moved back
    to the CPU, where torch keeps them)."""
    device = torch.device(device)
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), _cuda_index(device))
