"""Representational similarity: of a twin's predicted population responses, of pixels, of a
network's hidden features, and a shuffled control.

The similarity of two stimuli is the correlation of their representations after each unit is
z-scored over the stimuli (so that units of high rate or variance do not dominate): with ``U``
the features standardised per column over the n stimuli and ``Z`` its rows standardised,
``S = Z Z^T / d`` (n, n).
Li et al. (2019, NeurIPS) pulled a classifier's hidden similarity toward mouse V1's, denoised by a
twin; the pixel and shuffled matrices are the controls (Attias et al. 2024).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probtwin.errors import DataError

__all__ = ["neural_similarity", "pixel_similarity", "shuffled_similarity", "similarity_matrix"]


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
    u = u / u.pow(2).mean(dim=-2, keepdim=True).sqrt().clamp_min(1e-8)
    z = u - u.mean(dim=-1, keepdim=True)
    z = z / z.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)
    return z @ z.transpose(-1, -2) / features.shape[-1]


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
