"""What a classifier withstands: Gaussian noise, common corruptions and adversarial perturbations.

- Common corruptions (Hendrycks & Dietterich 2019): 15 types at 5 severities, from the maintained
  ``imagecorruptions`` package (``pip install imagecorruptions-imaug``), applied to each image as
  an 8-bit RGB picture and averaged back to the classifier's channels.
- FGSM (Goodfellow et al. 2015): ``x + eps * sign(grad_x loss)``; PGD (Madry et al. 2018):
  ``steps`` signed-gradient steps of ``step_size`` from a random start in the L-infinity ball of
  radius ``eps``, each projected back onto the ball and [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from probtwin.errors import DataError
from probtwin.infer.progress import progress

__all__ = ["CORRUPTIONS", "accuracy", "corrupt", "fgsm", "gaussian_noise", "pgd", "robustness"]

CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
"""The 15 common corruptions of ImageNet-C."""

_CHUNK = 512
_MIN_SIDE = 32


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Fraction of images classified correctly (in chunks).

    Parameters
    ----------
    model : torch.nn.Module
        Images (n, C, H, W) to logits (n, classes).
    images : array, shape (n, C, H, W)
    labels : array of int, shape (n,)
    """
    x, y = torch.as_tensor(np.asarray(images, dtype=np.float32)), torch.as_tensor(np.asarray(labels))
    right = sum(int((model(x[i : i + _CHUNK]).argmax(1) == y[i : i + _CHUNK]).sum()) for i in range(0, len(x), _CHUNK))
    return right / len(x)


def _check_epsilon(epsilon: float) -> float:
    if not (np.isfinite(epsilon) and 0 <= epsilon <= 1):
        raise DataError("epsilon", "an L-infinity radius in [0, 1] (pixel units)", repr(epsilon))
    return float(epsilon)


def _loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


def fgsm(model: nn.Module, images: np.ndarray, labels: np.ndarray, epsilon: float) -> np.ndarray:
    """Fast gradient sign attack: each image moved by ``epsilon`` along the sign of its loss's
    gradient, clipped to [0, 1].

    Parameters
    ----------
    model : torch.nn.Module
    images : ndarray, shape (n, C, H, W), values in [0, 1]
    labels : ndarray of int, shape (n,)
    epsilon : float
        L-infinity radius in pixel units.

    Returns
    -------
    ndarray of float32, shape (n, C, H, W)
    """
    eps = _check_epsilon(epsilon)
    x, y = torch.as_tensor(np.asarray(images, dtype=np.float32)), torch.as_tensor(np.asarray(labels))
    out = [
        (x[i : i + _CHUNK] + eps * _loss_gradient(model, x[i : i + _CHUNK], y[i : i + _CHUNK]).sign()).clamp(0, 1)
        for i in range(0, len(x), _CHUNK)
    ]
    return torch.cat(out).numpy()


def pgd(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    epsilon: float,
    steps: int = 10,
    step_size: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Projected gradient descent attack in the L-infinity ball (random start).

    Parameters
    ----------
    model, images, labels, epsilon
        As :func:`fgsm`.
    steps : int
    step_size : float, optional
        Default ``2.5 * epsilon / steps``.
    seed : int
        The random start.

    Returns
    -------
    ndarray of float32, shape (n, C, H, W)
    """
    eps = _check_epsilon(epsilon)
    size = 2.5 * eps / steps if step_size is None else float(step_size)
    generator = torch.Generator().manual_seed(seed)
    x0, y = torch.as_tensor(np.asarray(images, dtype=np.float32)), torch.as_tensor(np.asarray(labels))
    out = []
    for i in range(0, len(x0), _CHUNK):
        clean, target = x0[i : i + _CHUNK], y[i : i + _CHUNK]
        start = (torch.rand(clean.shape, generator=generator) * 2 - 1) * eps
        x = (clean + start).clamp(0, 1)
        for _ in range(int(steps)):
            x = x + size * _loss_gradient(model, x, target).sign()
            x = torch.minimum(torch.maximum(x, clean - eps), clean + eps).clamp(0, 1)
        out.append(x.detach())
    return torch.cat(out).numpy()


def gaussian_noise(images: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    """Images plus independent Gaussian noise of sd ``std`` per pixel, clipped to [0, 1]."""
    x = np.asarray(images, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, std, x.shape).astype(np.float32)
    return np.clip(x + noise, 0.0, 1.0)


def corrupt(images: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """One common corruption at one severity (1-5) of every image.

    Parameters
    ----------
    images : ndarray, shape (n, C, H, W), values in [0, 1]
    corruption : str
        One of :data:`CORRUPTIONS`. Images smaller than 32 pixels a side (the package's least)
        are mirror-padded to 32 for the corruption and cropped back.
    severity : int
    seed : int
        NumPy's global generator is seeded with it (the package draws from it).

    Returns
    -------
    ndarray of float32, shape (n, C, H, W), values in [0, 1]
    """
    if corruption not in CORRUPTIONS:
        raise DataError("corruption", f"one of {CORRUPTIONS}", repr(corruption))
    if severity not in (1, 2, 3, 4, 5):
        raise DataError("severity", "1, 2, 3, 4 or 5", repr(severity))
    try:
        from imagecorruptions import corrupt as apply
    except ImportError:
        raise DataError(
            "corruption", "the imagecorruptions package (pip install imagecorruptions-imaug)", "it is not installed"
        ) from None
    x = np.asarray(images, dtype=np.float32)
    pictures = np.round(255 * np.moveaxis(x, 1, -1)).astype(np.uint8)
    if pictures.shape[-1] == 1:
        pictures = np.repeat(pictures, 3, axis=-1)
    height, width = pictures.shape[1:3]
    pad_h, pad_w = max(0, _MIN_SIDE - height), max(0, _MIN_SIDE - width)  # the package needs 32 px a side
    pad = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    pictures = np.pad(pictures, pad, mode="reflect")
    # the package draws from NumPy's global generator: seed it, then restore it
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:  # the package works on one picture at a time
        out = np.stack([np.asarray(apply(p, corruption_name=corruption, severity=severity)) for p in pictures])
    finally:
        np.random.set_state(state)  # noqa: NPY002
    out = out[:, pad_h // 2 : pad_h // 2 + height, pad_w // 2 : pad_w // 2 + width]
    out = np.moveaxis(out.astype(np.float32) / 255.0, -1, 1)
    return (out.mean(axis=1, keepdims=True) if x.shape[1] == 1 else out[:, : x.shape[1]]).astype(np.float32)


def robustness(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    epsilons: Sequence[float] = (0.01, 0.02, 0.05, 0.1),
    noise_stds: Sequence[float] = (0.1, 0.2, 0.3),
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    pgd_steps: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """A classifier's accuracy on clean, noisy, corrupted and adversarial test images.

    Returns
    -------
    dict
        ``clean``; ``noise_<std>``; ``corruption_<name>`` (mean over severities) and
        ``corruption_mean``; ``fgsm_<eps>`` and ``pgd_<eps>``.
    """
    scores = {"clean": accuracy(model, images, labels)}
    for std in noise_stds:
        scores[f"noise_{std:g}"] = accuracy(model, gaussian_noise(images, std, seed), labels)
    per_type = []
    for name in progress(list(corruptions), "corruptions", unit="type"):
        scores[f"corruption_{name}"] = float(
            np.mean([accuracy(model, corrupt(images, name, s, seed), labels) for s in severities])
        )
        per_type.append(scores[f"corruption_{name}"])
    if per_type:
        scores["corruption_mean"] = float(np.mean(per_type))
    for eps in epsilons:
        scores[f"fgsm_{eps:g}"] = accuracy(model, fgsm(model, images, labels, eps), labels)
        scores[f"pgd_{eps:g}"] = accuracy(model, pgd(model, images, labels, eps, pgd_steps, seed=seed), labels)
    return scores
