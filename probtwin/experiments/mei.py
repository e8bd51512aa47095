"""Most exciting inputs (MEIs) per posterior draw, with the twin's uncertainty about their effect.

For a neuron ``i`` and a posterior draw ``theta_s`` the MEI is

    x*_{s,i} = argmax_x mu_i(x; theta_s)   subject to   ||x - m|| = norm

with ``m`` the mean training image (a blank screen) and a fixed L2 norm (the inception loops of
Walker et al. 2019; the ``mei`` package of the Sinz lab optimises it for an ensemble of a few
models, here every posterior draw gets its own). The norm constraint is built into the
parameterisation, ``x = m + norm * d / ||d||``, and ``d`` is a preconditioned image:

- ``"blur"``: ``d = G_sigma * v``, a Gaussian blur of the free pixels ``v`` (so is every gradient
  step on ``v``): high spatial frequencies, to which a deep core is sensitive but a neuron need
  not be, are damped;
- ``"fourier"``: ``d = F^-1[(f + f0)^-decay F[v]]``: a 1/f-coloured parameterisation, the
  spectrum of natural images.

Every (draw, neuron) pair is optimised at once with Adam, in bounded chunks. Each MEI is then
scored by ``eval_samples`` fresh posterior draws: how much the twin, all its uncertainty
included, expects the MEI to drive the neuron.

For a video twin the MEI is a short movie ``x`` of ``frames`` frames with a fixed L2 norm over
all its frames, and ``mu_i(x)`` the mean response over the frames from the twin's history on
(its core's and readout's lags: each of these frames sees a whole history, so that no frame's
drive depends on the movie's start). The
preconditioners act on each frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.nn import functional as F

from probtwin.errors import DataError
from probtwin.experiments._pairs import core_history, pair_chunks, paired_activation
from probtwin.experiments.receptive_fields import _neurons
from probtwin.infer import query as q
from probtwin.infer import seeded
from probtwin.infer.progress import progress

__all__ = ["PRECONDITIONERS", "mei"]

PRECONDITIONERS = ("blur", "fourier")


def _gaussian_kernel(sigma: float, channels: int, device) -> torch.Tensor:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, -1, -1).contiguous()


def _fourier_filter(height: int, width: int, decay: float, device) -> torch.Tensor:
    fy = torch.fft.fftfreq(height, device=device)[:, None]
    fx = torch.fft.rfftfreq(width, device=device)[None, :]
    f = torch.sqrt(fy**2 + fx**2)
    return 1.0 / (f + 1.0 / max(height, width)) ** decay


def mei(
    twin: Any,
    neurons: Any,
    num_samples: int = 10,
    steps: int = 200,
    norm: float | None = None,
    seed: int = 0,
    precondition: str = "blur",
    sigma: float = 1.0,
    decay: float = 1.0,
    lr: float = 0.05,
    behavior: np.ndarray | None = None,
    session: Any = None,
    eval_samples: int = 100,
    level: float = 0.9,
    frames: int | None = None,
) -> xr.Dataset:
    """Most exciting inputs of neurons, one per posterior draw, and their predicted activation.

    Parameters
    ----------
    twin : Twin
    neurons : array_like of int
        Neuron indices (positions, not ids).
    num_samples : int
        Posterior draws; each gets its own MEI per neuron.
    steps : int
        Adam steps.
    norm : float, optional
        L2 norm of ``x - m`` in pixel units; default: that of a typical training image,
        ``sqrt(sum_c std_c^2 H W)`` (of a movie: ``sqrt(sum_c std_c^2 frames H W)``).
    seed : int
        Seeds the posterior draws and the starting images.
    precondition : {"blur", "fourier"}
    sigma : float
        Blur standard deviation in pixels (``"blur"``).
    decay : float
        Spectral decay (``"fourier"``).
    lr : float
        Adam's step size on the free parameters.
    behavior : numpy.ndarray, shape (1, B), optional
        The state the MEI is optimised in (default: the average state).
    session : optional
    eval_samples : int
        Fresh posterior draws (seed + 1) that score each MEI.
    level : float
        Credible level of the activation's interval.
    frames : int, optional
        Video twins: the movie's frames (default: twice the twin's history, at least 2); the
        activation is the mean response over the frames from the twin's history on (its core's and readout's lags).

    Returns
    -------
    xarray.Dataset
        ``image`` (sample, neuron, channel, y, x), or for a video twin ``movie`` (sample,
        neuron, channel, frame, y, x); ``activation`` (sample, neuron): the mean
        response under the draw it was optimised for; ``activation_mean``,
        ``activation_lower``, ``activation_upper`` (sample, neuron): under ``eval_samples``
        fresh draws. ``attrs``: norm, steps, precondition.
    """
    if precondition not in PRECONDITIONERS:
        raise DataError("precondition", f"one of {PRECONDITIONERS}", repr(precondition))
    for name, value in (("num_samples", num_samples), ("steps", steps), ("eval_samples", eval_samples)):
        if int(value) != value or value < 1:
            raise DataError(name, "a positive integer", repr(value))
    if not 0 < level < 1:
        raise DataError("level", "a probability in (0, 1)", repr(level))
    k = twin.session_index(session)
    index = _neurons(twin, k, neurons)
    shape = tuple(twin.specs[k].stimulus_shape)
    video = len(shape) == 4
    history = core_history(twin)
    scored = None
    if video:
        frames = max(2 * history, 2) if frames is None else frames
        if int(frames) != frames or frames <= history:
            raise DataError("frames", f"a number of frames above the twin's history ({history})", repr(frames))
        shape = (shape[0], int(frames), *shape[2:])
        scored = slice(history, None)
    elif frames is not None:
        raise DataError("frames", "None for an image twin", repr(frames))
    channels, height, width = shape[0], shape[-2], shape[-1]
    device = twin.device
    mean = getattr(twin, f"stim_mean_{k}").reshape(1, -1, *[1] * (len(shape) - 1))
    std = getattr(twin, f"stim_std_{k}")
    if norm is None:
        norm = float(torch.sqrt((std**2).sum() * int(np.prod(shape[1:]))))
    if not np.isfinite(norm) or norm <= 0:
        raise DataError("norm", "a positive L2 norm", repr(norm))
    if behavior is not None:
        behavior = twin._condition("behavior", behavior, 1)
    if precondition == "blur":
        kernel = _gaussian_kernel(sigma, channels, device)

        def shape_of(v: torch.Tensor) -> torch.Tensor:
            if v.dim() == 5:  # a movie: every frame blurred
                n, c, f, h, w = v.shape
                return shape_of(v.transpose(1, 2).reshape(n * f, c, h, w)).reshape(n, f, c, h, w).transpose(1, 2)
            return F.conv2d(v, kernel, padding=kernel.shape[-1] // 2, groups=channels)
    else:
        spectrum = _fourier_filter(height, width, decay, device)

        def shape_of(v: torch.Tensor) -> torch.Tensor:
            return torch.fft.irfft2(torch.fft.rfft2(v) * spectrum, s=(height, width))

    def image_of(v: torch.Tensor) -> torch.Tensor:
        d = shape_of(v)
        d = d - d.mean(dim=(-2, -1), keepdim=True)
        length = d.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *[1] * (d.dim() - 1))
        return mean + norm * d / length

    draws = twin._posterior_draws(k, num_samples, seed)
    n_pairs = num_samples * len(index)
    draw_of = torch.as_tensor(np.repeat(np.arange(num_samples), len(index)))
    neuron_of = torch.as_tensor(np.tile(index, num_samples))
    with seeded(seed, device):
        start = torch.randn((n_pairs, *shape), device=device)
    images = np.empty((n_pairs, *shape), dtype=np.float32)
    activation = np.empty(n_pairs)
    with torch.enable_grad():
        for sl in pair_chunks(twin, k, num_samples, n_pairs, len(index), shape[1] if video else 1):
            pairs = (draws, draw_of[sl], neuron_of[sl], behavior, scored)
            v = start[sl].clone().requires_grad_(True)
            optimizer = torch.optim.Adam([v], lr=lr)
            for _ in progress(range(int(steps)), "most exciting inputs", unit="step"):
                act = paired_activation(twin, k, image_of(v), *pairs)
                (v.grad,) = torch.autograd.grad(-act.sum(), v)  # the twin's parameters are left alone
                optimizer.step()
            with torch.no_grad():
                x = image_of(v)
                activation[sl] = paired_activation(twin, k, x, *pairs).cpu()
                images[sl] = x.cpu().numpy()
    scores = _score(twin, k, images, neuron_of.numpy(), behavior, eval_samples, seed + 1, level, scored)
    coords = {
        "sample": np.arange(num_samples),
        "neuron": np.asarray(twin.specs[k].neuron_ids)[index],
        "channel": np.arange(channels),
        "y": np.arange(height, dtype=float),
        "x": np.arange(width, dtype=float),
    }
    pair_dims = ("sample", "neuron")

    def grid(values: np.ndarray) -> np.ndarray:
        return values.reshape(num_samples, len(index), *values.shape[1:])

    if video:
        coords["frame"] = np.arange(shape[1])
        stimulus = {"movie": (pair_dims + ("channel", "frame", "y", "x"), grid(images))}
    else:
        stimulus = {"image": (pair_dims + ("channel", "y", "x"), grid(images))}
    data = {
        **stimulus,
        "activation": (pair_dims, grid(activation)),
        **{f"activation_{key}": (pair_dims, grid(value)) for key, value in scores.items()},
    }
    attrs = dict(norm=norm, steps=int(steps), precondition=precondition, level=level, eval_samples=eval_samples)
    if video:
        attrs["scored_from_frame"] = history
    return xr.Dataset(data, coords=coords, attrs=attrs)


@torch.no_grad()
def _score(twin, k, images, neuron_of, behavior, eval_samples, seed, level, scored=None) -> dict[str, np.ndarray]:
    """Posterior mean and central interval of each image's neuron's mean response (a movie's:
    over its ``scored`` frames)."""
    draws = twin._posterior_draws(k, eval_samples, seed)
    values = np.empty((eval_samples, len(images)))
    rows = np.arange(len(images))
    behavior = None if behavior is None else np.repeat(behavior, len(images), axis=0)
    readers = {"mean": q.mean(f"responses_{k}")}
    for sl, _, res in twin._run(k, images, behavior, None, eval_samples, readers, draws):
        mean = res["mean"]
        if mean.dim() == 4:  # movies (draws, chunk, frames, neurons): over the scored frames
            mean = mean[..., scored if scored is not None else slice(None), :].mean(-2)
        values[:, sl] = mean[:, rows[sl] - sl.start, neuron_of[sl]].cpu().numpy()
    lo = (1 - level) / 2
    return {
        "mean": values.mean(0),
        "lower": np.quantile(values, lo, axis=0),
        "upper": np.quantile(values, 1 - lo, axis=0),
    }
