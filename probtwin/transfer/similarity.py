"""Representational similarity: of a twin's predicted population responses, of pixels, of a
network's hidden features, and a shuffled control.

The similarity of two stimuli is the correlation of their representations after each unit is
z-scored over the stimuli (so that units of high rate or variance do not dominate): with ``U``
the features standardised per column over the n stimuli and ``Z`` its rows standardised,
``S = Z Z^T / d`` (n, n).
Units constant over the stimuli (a silent ReLU, a blank border pixel) are left out.
Li et al. (2019, NeurIPS) pulled a classifier's hidden similarity toward mouse V1's, denoised by a
twin; the pixel and shuffled matrices are the controls (Attias et al. 2024).
:func:`representational_similarity` gives the matrix of either side, a twin or a classifier
(whose input the images are adapted to by :func:`adapt_images`, as in training).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from probtwin.errors import DataError

__all__ = [
    "adapt_images",
    "neural_similarity",
    "pixel_similarity",
    "representational_similarity",
    "shuffled_similarity",
    "similarity_matrix",
]


def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """Correlation between the rows of a feature matrix, each unit (column) first z-scored over
    the stimuli (rows).

    Parameters
    ----------
    features : torch.Tensor, shape (..., n, d)
        One row of ``d`` features per stimulus; leading dimensions are a batch of matrices. A
        unit constant over the stimuli contributes nothing.

    Returns
    -------
    torch.Tensor, shape (..., n, n)
        Entries in [-1, 1], ones on the diagonal (0 for a constant row).
    """
    u = features - features.mean(dim=-2, keepdim=True)
    scale = u.pow(2).mean(dim=-2, keepdim=True).sqrt()
    varies = (scale > 1e-8).to(u.dtype)  # constant units (e.g. a silent ReLU) are left out
    count = varies.sum(dim=-1, keepdim=True).clamp_min(1)
    u = u / scale.clamp_min(1e-8)
    z = (u - (u * varies).sum(dim=-1, keepdim=True) / count) * varies
    z = z / (z.pow(2).sum(dim=-1, keepdim=True) / count).sqrt().clamp_min(1e-8)
    return z @ z.transpose(-1, -2) / count


def neural_similarity(
    twin: Any, images: np.ndarray, num_samples: int | None = None, seed: int = 0, session: Any = None
) -> np.ndarray:
    """Similarity of a twin's predicted population responses to each pair of images.

    Parameters
    ----------
    twin : ImageTwin
        A fitted twin.
    images : ndarray, shape (n, C, H, W)
        Stimuli in the twin's own format (its recording's channels, size and pixel range).
    num_samples : int, optional
        ``None``: the similarity of the posterior mean responses. Otherwise one matrix per
        posterior draw, carrying the twin's uncertainty.
    seed : int
    session : optional
        The twin's session whose neurons are used.

    Returns
    -------
    ndarray of float32, shape (n, n) or (num_samples, n, n)
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) < 2:
        raise DataError("similarity_images", "at least two images (n, C, H, W) in the twin's format", str(images.shape))
    shape = tuple(twin.specs[twin.session_index(session)].stimulus_shape)
    if images.shape[1:] != shape:
        raise DataError(
            "similarity_images",
            f"images of the twin's input shape (n, {', '.join(map(str, shape))})",
            f"shape {images.shape}; resize them (e.g. probtwin.datasets.resize_images) first",
        )
    prediction = twin.predict(images, num_samples=num_samples or 100, seed=seed, session=session)
    responses = prediction.mean if num_samples is None else prediction.samples
    return similarity_matrix(torch.as_tensor(np.asarray(responses, dtype=np.float32))).numpy()


def pixel_similarity(images: np.ndarray) -> np.ndarray:
    """Similarity of the images' pixels (the control for what images alone explain).

    Parameters
    ----------
    images : ndarray, shape (n, C, H, W)

    Returns
    -------
    ndarray of float32, shape (n, n)
    """
    images = np.asarray(images, dtype=np.float32)
    return similarity_matrix(torch.as_tensor(images.reshape(len(images), -1))).numpy()


def shuffled_similarity(target: np.ndarray, seed: int = 0) -> np.ndarray:
    """A similarity matrix with its stimuli relabelled by one random permutation: the same values
    and spectrum, no relation to the images (the control for any matrix of that structure).

    Parameters
    ----------
    target : ndarray, shape (n, n) or (draws, n, n)
    seed : int

    Returns
    -------
    ndarray, the shape of ``target``
    """
    target = np.asarray(target)
    order = np.random.default_rng(seed).permutation(target.shape[-1])
    return target[..., order, :][..., :, order]


def adapt_images(images: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Images of any format as a classifier's input: channels averaged (or repeated), resized by
    area averaging, scaled to [0, 1] over the set.

    Parameters
    ----------
    images : ndarray, shape (n, C, H, W)
    shape : (channels, height, width)

    Returns
    -------
    ndarray of float32, shape (n, *shape)
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 4:
        raise DataError("similarity_images", "images (n, C, H, W)", str(tuple(x.shape)))
    x = x.mean(dim=1, keepdim=True).expand(-1, shape[0], -1, -1)
    x = F.interpolate(x, size=shape[1:], mode="area") if x.shape[-2:] != shape[1:] else x
    low, high = x.min(), x.max()
    return ((x - low) / (high - low).clamp_min(1e-8)).numpy().astype(np.float32)


def representational_similarity(
    model_or_twin: Any, images: np.ndarray, num_samples: int | None = None, seed: int = 0, session: Any = None
) -> np.ndarray:
    """The similarity matrix a regulariser uses: of a twin's predicted population responses, or
    of a classifier's regularised (hidden) layer.

    Parameters
    ----------
    model_or_twin : ImageTwin or torch.nn.Module
        A fitted twin (:func:`neural_similarity`), or a classifier such as
        :class:`~probtwin.transfer.DigitClassifier`: its ``features`` (the layer the regulariser
        shapes) when it has them, else its output.
    images : ndarray, shape (n, C, H, W)
        For a twin, in its format; for a classifier, any format: they are adapted to its input
        (:func:`adapt_images`) as the regulariser adapts its similarity images.
    num_samples, seed, session
        A twin's, as in :func:`neural_similarity`.

    Returns
    -------
    ndarray of float32, shape (n, n) (or (num_samples, n, n) for a twin's draws)
    """
    if not isinstance(model_or_twin, nn.Module) or hasattr(model_or_twin, "specs"):
        return neural_similarity(model_or_twin, images, num_samples, seed, session)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) < 2:
        raise DataError("images", "at least two images (n, C, H, W)", f"shape {images.shape}")
    shape = getattr(model_or_twin, "input_shape", images.shape[1:])
    x = torch.as_tensor(adapt_images(images, tuple(shape)))
    layer = getattr(model_or_twin, "features", model_or_twin)
    with torch.no_grad():
        return similarity_matrix(layer(x).flatten(1)).numpy()
