"""The fitting loop: Adam with gradient clipping, a plateau learning-rate schedule, early stopping
on a validation score with the best state restored, checkpoints that a fit resumes from, and a
progress bar.

The loop knows nothing of the model: it drives any object with

- ``parameters()`` (torch parameters) and ``state_dict()`` / ``load_state_dict()``;
- ``epoch_batches(epoch)``: an iterable of batches;
- ``loss_terms(batch)``: an :class:`~probtwin.infer.elbo.ElboTerms`;
- ``validation_score()``: a number, higher is better (e.g. validation correlation), and
  ``train()`` / ``eval()`` modes.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from probtwin.errors import DataError
from probtwin.infer.progress import progress_enabled
from probtwin.infer.seeding import rng_state, set_rng_state

__all__ = ["FitConfig", "History", "Fittable", "run_fit"]


class Fittable(Protocol):
    def parameters(self) -> Any: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> Any: ...
    def epoch_batches(self, epoch: int) -> Any: ...
    def loss_terms(self, batch: Any) -> Any: ...
    def validation_score(self) -> float: ...
    def train(self, mode: bool = True) -> Any: ...


@dataclass
class FitConfig:
    """Settings of :func:`run_fit`.

    Attributes
    ----------
    max_epochs : int
    lr : float
        Adam's initial learning rate.
    clip_norm : float
        Gradients are clipped to this global norm.
    patience : int
        Epochs without a better validation score before the learning rate decays.
    lr_decay : float
        Factor of each decay.
    max_lr_decays : int
        After this many decays, the next plateau stops the fit.
    min_delta : float
        Improvement that counts.
    seed : int
    progress : bool
    checkpoint : str or None
        File written after every epoch; a fit started with an existing file resumes from it.
    time_limit : float or None
        Seconds: no epoch starts after this much fitting time (the best state is kept).
    on_epoch : callable or None
        Called with the epoch's index after each epoch's steps and validation (e.g. to collect
        the parameters' trajectory).
    restore_best : bool
        Whether the fit ends in the best state (else in its last).
    """

    max_epochs: int = 100
    lr: float = 5e-3
    clip_norm: float = 10.0
    patience: int = 5
    lr_decay: float = 0.3
    max_lr_decays: int = 3
    min_delta: float = 1e-4
    seed: int = 0
    progress: bool = True
    checkpoint: str | None = None
    time_limit: float | None = None
    on_epoch: Any = None
    restore_best: bool = True


@dataclass
class History:
    """Per-epoch record of a fit: one dict per epoch, and how it ended."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    stopped: str = ""
    device: str = "cpu"

    def __getitem__(self, key: str) -> list:
        return [e[key] for e in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        return (
            f"History({len(self.epochs)} epochs on {self.device}, best epoch {self.best_epoch} "
            f"(validation {self.best_score:.4f}), stopped: {self.stopped}; last {last})"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _restore(twin: Fittable, state: dict | None, fallback: dict) -> None:
    twin.load_state_dict(state if state is not None else fallback)


def run_fit(twin: Fittable, config: FitConfig, device: torch.device) -> History:
    """Fit by stochastic gradient ascent on the ELBO; return the per-epoch history.

    Each epoch records ``elbo``, ``log_likelihood``, ``kl`` and ``factor`` (each step's batch is
    an unbiased estimate of the full-data value; the epoch's figure is their mean),
    ``validation``, ``lr`` and ``seconds``.

    A step whose loss or gradient is not finite is not taken: the best state so far (or the
    initial one) is restored at once, with a warning, and the learning rate decays as at a
    plateau. A fit resumed from ``config.checkpoint`` continues the interrupted one exactly (the
    random state of the CPU and of the device included); resuming with another ``lr`` is refused.

    Raises
    ------
    DataError
        When a checkpoint was written by a fit with another learning rate.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    optimizer = torch.optim.Adam(twin.parameters(), lr=config.lr)
    history = History(device=str(device))
    state = {"epoch": 0, "since_best": 0, "decays": 0, "best_state": None, "lr": config.lr}
    path = Path(config.checkpoint) if config.checkpoint else None
    if path is not None and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        fitted_lr = saved["engine"].get("lr", config.lr)
        if not math.isclose(fitted_lr, config.lr):
            raise DataError(
                "lr",
                f"{fitted_lr} as in the checkpoint being resumed (or another checkpoint path for a new fit)",
                repr(config.lr),
            )
        twin.load_state_dict(saved["twin"])
        optimizer.load_state_dict(saved["optimizer"])  # moves its state to the parameters' device
        history = History(**{**saved["history"], "device": str(device)})
        state = saved["engine"]
        rng = saved["rng"]
        set_rng_state(rng if isinstance(rng, dict) else {"cpu": rng}, device)
    initial = copy.deepcopy(twin.state_dict())  # restored on a divergence before any best state
    shown = config.progress and progress_enabled()
    bar = tqdm(total=config.max_epochs, initial=state["epoch"], disable=not shown, desc="fit", unit="epoch")
    if shown:
        bar.write(f"probtwin: fitting on {device}")
    started = time.perf_counter() - sum(e["seconds"] for e in history.epochs)

    def decay(reason: str) -> bool:
        """Restore the best state and decay the learning rate; False when no decay is left."""
        if state["decays"] >= config.max_lr_decays:
            history.stopped = reason
            return False
        state["decays"] += 1
        state["since_best"] = 0
        _restore(twin, state["best_state"], initial)
        for group in optimizer.param_groups:
            group["lr"] *= config.lr_decay
        return True

    while state["epoch"] < config.max_epochs:
        if config.time_limit is not None and time.perf_counter() - started > config.time_limit:
            history.stopped = f"time limit ({config.time_limit:.0f} s) after {state['epoch']} epochs"
            break
        epoch = state["epoch"]
        start = time.perf_counter()
        twin.train()
        sums = {"elbo": 0.0, "log_likelihood": 0.0, "kl": 0.0, "factor": 0.0}
        n_batches, diverged = 0, False
        for batch in twin.epoch_batches(epoch):
            terms = twin.loss_terms(batch)
            optimizer.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(terms.loss.detach()))
            if finite:
                terms.loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(twin.parameters(), config.clip_norm)
                finite = bool(torch.isfinite(norm))
            if not finite:
                diverged = True
                optimizer.zero_grad(set_to_none=True)
                break
            optimizer.step()
            for key in sums:
                sums[key] += float(getattr(terms, key).detach())
            n_batches += 1
        if diverged:
            warnings.warn(
                f"probtwin: a non-finite loss or gradient in epoch {epoch} (step {n_batches}); "
                "restored the best state so far and decayed the learning rate",
                RuntimeWarning,
                stacklevel=2,
            )
            if not decay(f"non-finite loss after {epoch + 1} epochs, no learning-rate decay left"):
                _restore(twin, state["best_state"], initial)
                state["epoch"] = config.max_epochs
        twin.train(False)
        with torch.no_grad():
            score = float(twin.validation_score())
        record = {k: v / n_batches if n_batches else math.nan for k, v in sums.items()}
        record.update(
            epoch=epoch, validation=score, lr=optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - start
        )
        history.epochs.append(record)
        if config.on_epoch is not None:
            config.on_epoch(epoch)
        if math.isfinite(score) and score > history.best_score + config.min_delta:
            history.best_score, history.best_epoch = score, epoch
            state["best_state"] = copy.deepcopy(twin.state_dict())
            state["since_best"] = 0
        elif not diverged:
            state["since_best"] += 1
        state["epoch"] = max(state["epoch"], epoch + 1)
        bar.update(1)
        bar.set_postfix(elbo=f"{record['elbo']:.4g}", val=f"{score:.4f}", lr=f"{record['lr']:.1e}")
        if state["since_best"] >= config.patience:
            if state["best_state"] is None:
                history.stopped = f"no finite validation score in {epoch + 1} epochs"
                state["epoch"] = config.max_epochs
            elif not decay(f"early stopping after {epoch + 1} epochs"):
                state["epoch"] = config.max_epochs
        if path is not None:
            _atomic_save(
                {
                    "twin": twin.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "engine": state,
                    "history": history.to_dict(),
                    "rng": rng_state(device),
                },
                path,
            )
    bar.close()
    if not history.stopped:
        history.stopped = f"max_epochs ({config.max_epochs})"
    if history.epochs and history.best_epoch < 0:
        warnings.warn(
            "probtwin: no epoch had a finite validation score; the twin keeps its last state",
            RuntimeWarning,
            stacklevel=2,
        )
    if state["best_state"] is not None and config.restore_best:
        twin.load_state_dict(state["best_state"])
    twin.train(False)
    return history
