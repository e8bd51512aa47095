"""Natural-like images: Gaussian noise with the 1/f amplitude spectrum of natural scenes."""

from __future__ import annotations

import numpy as np

__all__ = ["pink_noise_images", "shift_images"]


def _frequency_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    return fy, fx


def pink_noise_images(
    n: int, size: tuple[int, int], rng: np.random.Generator, exponent: float = 1.0, chunk: int = 1024
) -> np.ndarray:
    """Images whose amplitude spectrum falls as ``1 / f**exponent`` (natural scenes: about 1).

    Parameters
    ----------
    n : int
        Number of images.
    size : (int, int)
        Height and width in pixels.
    rng : numpy.random.Generator
    exponent : float
        Spectral slope of the amplitude.
    chunk : int
        Images generated at a time (bounds memory).

    Returns
    -------
    numpy.ndarray of float32, shape (n, height, width)
        Each image has zero mean and unit standard deviation over its pixels.
    """
    height, width = size
    fy, fx = _frequency_grid(height, width)
    f = np.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    amplitude = 1.0 / f**exponent
    amplitude[0, 0] = 0.0
    out = np.empty((n, height, width), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        white = rng.standard_normal((m, height, width))
        img = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=(height, width))
        img -= img.mean(axis=(1, 2), keepdims=True)
        img /= img.std(axis=(1, 2), keepdims=True)
        out[start : start + m] = img
    return out


def shift_images(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Sample each image at ``q + shift`` (sub-pixel, circular) by a phase ramp in Fourier space.

    Parameters
    ----------
    images : numpy.ndarray, shape (n, height, width)
    shifts : numpy.ndarray, shape (n, 2)
        (x, y) shift of each image in pixels; output pixel ``q`` holds input pixel ``q + shift``.

    Returns
    -------
    numpy.ndarray of float32, shape (n, height, width)
    """
    n, height, width = images.shape
    fy, fx = _frequency_grid(height, width)
    ramp = np.exp(2j * np.pi * (fx[None] * shifts[:, 0, None, None] + fy[None] * shifts[:, 1, None, None]))
    return np.fft.irfft2(np.fft.rfft2(images) * ramp, s=(height, width)).astype(np.float32)
