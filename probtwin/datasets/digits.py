"""Labelled handwritten digits (MNIST, 5,000 images) for image classifiers (``probtwin.transfer``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probtwin.datasets.paths import data_file
from probtwin.errors import DataError

__all__ = ["mnist_digits"]


def mnist_digits(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of the shared data folder (500 a class).

    Parameters
    ----------
    root : str or Path, optional
        The data folder (default: ``$PROBTWIN_DATA`` or ``shared/data`` beside the checkout).

    Returns
    -------
    images : ndarray of float32, shape (5000, 1, 28, 28)
        Pixel values in [0, 1].
    labels : ndarray of int64, shape (5000,)
        Digits 0-9, in the file's order: sorted by class (shuffle before splitting).
    """
    path = data_file("mnist_5k/mnist_5k.csv.gz", root)
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(str(path), "rows of 784 pixels and a label", f"shape {table.shape}")
    images = (table[:, :784].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return images, table[:, 784]
