"""The field's decoders of behaviour from spikes, the motor twin's baselines, given what the twin
is given: every bin of a window's spike counts (before and after the decoded bin: the twin's
guide smooths over the whole window) and the window's task inputs (e.g. the reach target), and
every hyperparameter chosen on the validation tier.

- :func:`ridge_decoder`: ridge regression on a window of ``lags`` bins before and ``leads`` bins
  after each bin, plus the task inputs; window and penalty chosen by validation R^2.
- :func:`gru_decoder`: a bidirectional GRU over each window's bins (counts and task inputs) with
  a linear readout, the field's strong recurrent baseline (Glaser et al. 2020); width and dropout
  chosen, and training stopped, by validation R^2.

Both fit on the train tier and report the test tier.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from probtwin import metrics
from probtwin.bench.accuracy import ridge_fit
from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer import seeded

__all__ = ["ALPHAS", "gru_decoder", "ridge_decoder", "window_counts"]

ALPHAS = (1.0, 10.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)


def window_counts(responses: np.ndarray, lags: int, leads: int = 0) -> np.ndarray:
    """Each bin's counts with those of the ``lags`` bins before and the ``leads`` bins after it in
    the same trial (zeros outside the trial).

    Returns
    -------
    numpy.ndarray, shape (trials, frames, units (lags + 1 + leads))
        Blocks of units: the bin itself, then 1..lags bins back, then 1..leads bins ahead.
    """
    y = np.asarray(responses, dtype=np.float64)
    if y.ndim != 3:
        raise DataError("responses", "shape (trials, frames, units)", f"shape {y.shape}")
    for name, k in (("lags", lags), ("leads", leads)):
        if int(k) != k or not 0 <= k < y.shape[1]:
            raise DataError(name, f"an integer in [0, {y.shape[1] - 1}]", repr(k))
    blocks = [y]
    for k in range(1, int(lags) + 1):
        z = np.zeros_like(y)
        z[:, k:] = y[:, :-k]
        blocks.append(z)
    for k in range(1, int(leads) + 1):
        z = np.zeros_like(y)
        z[:, :-k] = y[:, k:]
        blocks.append(z)
    return np.concatenate(blocks, axis=-1)


def _task_inputs(rec: Recording, inputs: bool) -> np.ndarray | None:
    if not inputs or rec.stimuli is None:
        return None
    u = np.asarray(rec.stimuli, dtype=np.float64)
    if u.ndim != 3 or u.shape[:2] != (rec.n_trials, rec.n_frames):
        raise DataError("stimuli", "task inputs (trials, frames, features)", f"shape {u.shape}")
    return u


def _check(rec: Recording) -> None:
    if rec.behavior is None:
        raise DataError("behavior", "behaviour to decode", "None")
    if rec.n_frames is None:
        raise DataError("responses", "a time series (trials, frames, units)", f"shape {rec.responses.shape}")


def _r2(observed: np.ndarray, predicted: np.ndarray) -> float:
    return float(metrics.r_squared(observed, predicted).mean())


def ridge_decoder(
    rec: Recording,
    lags: int | Sequence[int] = (0, 1, 2, 3, 5),
    leads: int | Sequence[int] = (0, 1, 2, 3, 5),
    inputs: bool = True,
    alphas: Sequence[float] = ALPHAS,
) -> dict:
    """Ridge regression of each bin's behaviour on a window of spike counts and the task inputs.

    Parameters
    ----------
    rec : Recording
        Responses (trials, frames, units), behaviour (trials, frames, dims), optional task inputs
        as stimuli (trials, frames, features); tiers train, validation and test.
    lags, leads : int or sequence of int
        Bins before and after each bin in its window; a sequence is a grid searched together with
        ``alphas`` by validation R^2. ``leads=0`` is a causal decoder.
    inputs : bool
        Add the bin's task inputs to its features.

    Returns
    -------
    dict
        ``r2`` (test, mean over dims), ``r2_per_dim``, ``lags``, ``leads``, ``alpha`` (chosen),
        ``validation_r2``, ``prediction`` (test trials, frames, dims).
    """
    _check(rec)
    y = np.asarray(rec.behavior, dtype=np.float64).reshape(rec.n_trials * rec.n_frames, -1)
    tiers = np.repeat(rec.tiers, rec.n_frames)  # each bin's trial's tier
    train, validation, test = (tiers == t for t in ("train", "validation", "test"))
    u = _task_inputs(rec, inputs)
    best = None
    grid = itertools.product(np.atleast_1d(lags).tolist(), np.atleast_1d(leads).tolist())
    for lag, lead in grid:
        x = window_counts(rec.responses, lag, lead)
        x = x if u is None else np.concatenate([x, u], axis=-1)
        x = x.reshape(len(y), -1)
        alpha, predict = ridge_fit(x, y, train, validation, _r2, tuple(alphas))
        score = _r2(y[validation], predict(x[validation]))
        if best is None or score > best[0]:
            best = (score, lag, lead, alpha, predict, x)
    score, lag, lead, alpha, predict, x = best
    pred = predict(x[test])
    r2 = metrics.r_squared(y[test], pred)
    return {
        "r2": float(r2.mean()),
        "r2_per_dim": r2.tolist(),
        "lags": int(lag),
        "leads": int(lead),
        "alpha": alpha,
        "validation_r2": score,
        "prediction": pred.reshape(-1, rec.n_frames, y.shape[-1]),
    }


class _GRU(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_out: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(n_in, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.drop(x))
        return self.out(self.drop(h))


def gru_decoder(
    rec: Recording,
    hidden: int | Sequence[int] = (32, 64, 128),
    dropout: float | Sequence[float] = (0.0, 0.3, 0.5, 0.6, 0.7),
    inputs: bool = True,
    lr: float = 3e-3,
    batch_size: int = 16,
    max_epochs: int = 400,
    patience: int = 40,
    seed: int = 0,
    time_limit: float | None = None,
) -> dict:
    """A bidirectional GRU decoder of behaviour from each window's spike counts and task inputs.

    Counts are ``sqrt``-transformed and standardised, behaviour standardised, on the train tier;
    the loss is the mean squared error; Adam, minibatches of trials; training stops when the
    validation R^2 has not improved for ``patience`` epochs, and the best epoch's weights are
    kept. Each (hidden, dropout) of the grid is trained so, with ``time_limit`` seconds of its
    own; the best by validation R^2 is scored on the test tier. The default grid reaches past the
    best setting on DAD chewie session 0 (hidden 64, dropout 0.6; an earlier grid that stopped at
    dropout 0.3 chose its edge and left the baseline 0.02-0.05 below what it can do).

    Returns
    -------
    dict
        ``r2`` (test), ``r2_per_dim``, ``hidden``, ``dropout``, ``epochs`` (of the chosen one),
        ``validation_r2``, ``prediction`` (test trials, frames, dims), ``fit_seconds`` (all).
    """
    _check(rec)
    tiers = np.asarray(rec.tiers)
    train, validation, test = (tiers == t for t in ("train", "validation", "test"))
    if not train.any() or not validation.any():
        raise DataError("tiers", "train and validation trials", f"{dict(zip(*np.unique(tiers, return_counts=True)))}")
    x = np.sqrt(np.asarray(rec.responses, dtype=np.float64))
    u = _task_inputs(rec, inputs)
    x = x if u is None else np.concatenate([x, u], axis=-1)
    mu, sd = x[train].mean((0, 1)), x[train].std((0, 1)) + 1e-8
    v = np.asarray(rec.behavior, dtype=np.float64)
    vm, vs = v[train].mean((0, 1)), v[train].std((0, 1)) + 1e-8
    xt = torch.as_tensor((x - mu) / sd, dtype=torch.float32)
    vt = torch.as_tensor((v - vm) / vs, dtype=torch.float32)
    start = time.perf_counter()
    best = None
    for h, p in itertools.product(np.atleast_1d(hidden).tolist(), np.atleast_1d(dropout).tolist()):
        net, score, epochs = _train_gru(  # each setting has its own time_limit, as each twin fit has
            xt, vt, train, validation, int(h), float(p), lr, batch_size, max_epochs, patience, seed, time_limit
        )
        if best is None or score > best[1]:
            best = (net, score, epochs, int(h), float(p))
    net, score, epochs, h, p = best
    with torch.no_grad():
        pred = net(xt[test]).numpy() * vs + vm
    r2 = metrics.r_squared(v[test], pred)
    return {
        "r2": float(r2.mean()),
        "r2_per_dim": r2.tolist(),
        "hidden": h,
        "dropout": p,
        "epochs": epochs,
        "validation_r2": score,
        "prediction": pred,
        "fit_seconds": time.perf_counter() - start,
    }


def _train_gru(x, v, train, validation, hidden, dropout, lr, batch_size, max_epochs, patience, seed, limit):
    """One GRU trained with early stopping on validation R^2, starting no epoch after ``limit``
    seconds: (net at its best epoch, that R^2, epochs run)."""
    start = time.perf_counter()
    with seeded(seed):
        net = _GRU(x.shape[-1], hidden, v.shape[-1], dropout)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        rows = np.flatnonzero(train)
        best, state, since, epoch = -np.inf, None, 0, 0
        for epoch in range(1, max_epochs + 1):
            net.train()
            for batch in np.array_split(
                np.random.default_rng(seed + epoch).permutation(rows), max(1, len(rows) // batch_size)
            ):
                opt.zero_grad()
                loss = (net(x[batch]) - v[batch]).pow(2).mean()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                score = _r2(v[validation].numpy(), net(x[validation]).numpy())
            if score > best:
                best, state, since = score, {k: t.clone() for k, t in net.state_dict().items()}, 0
            else:
                since += 1
            if since >= patience or (limit is not None and time.perf_counter() - start > limit):
                break
    net.load_state_dict(state)
    net.eval()
    return net, best, epoch
