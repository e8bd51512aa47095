"""A population of model V1 neurons with known parameters that responds to any image.

For image s (pixels q = (x, y)), behaviour b and gaze g, neuron i's mean response is

    mu_i = a_i softplus(2 ((d_i - m_i) / s_i - b_i)) exp(w_i . z)

- ``d_i`` the drive: ``G_i . s(q + g)`` for a simple cell, the norm of the quadrature pair
  ``(G_i^even . s, G_i^odd . s)`` for a complex (energy) cell, with
  ``G_i(q) = exp(-|q - r_i|^2 / (2 sigma_i^2)) cos(2 pi f_i (q - r_i) . u(theta_i) + phi_i)``,
  mean-free and of unit norm; the eye moves every receptive field by g;
- ``m_i``, ``s_i`` the drive's mean and standard deviation over reference images;
- ``z`` the behaviour standardised by the recording's mean and standard deviation (pupil,
  pupil change, running speed);
- shifted neurons prefer ``theta_i + Delta_i (p - 1/2)``, with ``p`` the pupil state: the normal
  CDF of the standardised pupil, in 16 levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from probtwin.errors import DataError
from probtwin.simulate.images import shift_images

__all__ = ["V1Population", "firing_rate", "gabor_bank", "receptive_field_geometry"]

PUPIL_LEVELS = 16


def receptive_field_geometry(
    positions: np.ndarray, orientation: np.ndarray, sigma: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's distance along ``u(theta_i) = (cos, sin)`` from each centre, and the
    Gaussian envelope there, both (neurons, height, width) (pixels at integer coordinates)."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    dx = x[None] - positions[:, 0, None, None]
    dy = y[None] - positions[:, 1, None, None]
    along = dx * np.cos(orientation)[:, None, None] + dy * np.sin(orientation)[:, None, None]
    return along, np.exp(-(dx**2 + dy**2) / (2 * sigma[:, None, None] ** 2))


def gabor_bank(
    positions: np.ndarray,
    orientation: np.ndarray,
    frequency: np.ndarray,
    sigma: np.ndarray,
    phase: np.ndarray,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Even and odd Gabor filters, mean-free, unit L2 norm.

    Parameters
    ----------
    positions : numpy.ndarray, shape (neurons, 2)
        Centres (x, y) in pixels.
    orientation, frequency, sigma, phase : numpy.ndarray, shape (neurons,)
        Radians, cycles per pixel, pixels, radians.
    size : (int, int)
        Height and width.

    Returns
    -------
    even, odd : numpy.ndarray of float32, shape (neurons, height * width)
    """
    along, envelope = receptive_field_geometry(positions, orientation, sigma, size)
    arg = 2 * np.pi * frequency[:, None, None] * along + phase[:, None, None]
    banks = []
    for carrier in (np.cos(arg), np.sin(arg)):
        g = (envelope * carrier).reshape(len(positions), -1)
        g -= g.mean(axis=1, keepdims=True)
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        banks.append(g.astype(np.float32))
    return banks[0], banks[1]


@dataclass
class V1Population:
    """Parameters of the simulated neurons, each array with neurons first.

    Attributes
    ----------
    rf_position : (neurons, 2) receptive-field centres (x, y), pixels, at zero gaze
    orientation, spatial_frequency, envelope_sigma, phase : (neurons,)
    complex_cell : (neurons,) bool
    amplitude, threshold : (neurons,)
    behavior_weights : (neurons, 3)
    orientation_shift : (neurons,) radians, 0 for neurons that do not shift
    behavior_mean, behavior_std : (3,) standardisation of behaviour
    image_size : (height, width)
    drive_offset, drive_scale : (neurons,) set by :meth:`calibrate`
    """

    rf_position: np.ndarray
    orientation: np.ndarray
    spatial_frequency: np.ndarray
    envelope_sigma: np.ndarray
    phase: np.ndarray
    complex_cell: np.ndarray
    amplitude: np.ndarray
    threshold: np.ndarray
    behavior_weights: np.ndarray
    orientation_shift: np.ndarray
    behavior_mean: np.ndarray
    behavior_std: np.ndarray
    image_size: tuple[int, int]
    drive_offset: np.ndarray | None = None
    drive_scale: np.ndarray | None = None

    @property
    def n_neurons(self) -> int:
        return len(self.orientation)

    @property
    def shifted(self) -> np.ndarray:
        return self.orientation_shift != 0

    def _bank(self, neurons: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return gabor_bank(
            self.rf_position[neurons],
            theta,
            self.spatial_frequency[neurons],
            self.envelope_sigma[neurons],
            self.phase[neurons],
            self.image_size,
        )

    def _drive(self, flat: np.ndarray, even: np.ndarray, odd: np.ndarray, complex_cell: np.ndarray) -> np.ndarray:
        e = flat @ even.T
        o = flat @ odd.T
        return np.where(complex_cell[None], np.sqrt(e**2 + o**2), e)

    def calibrate(self, reference: np.ndarray) -> None:
        """Set ``drive_offset`` and ``drive_scale`` from reference images (n, height, width)."""
        everyone = np.arange(self.n_neurons)
        even, odd = self._bank(everyone, self.orientation)
        drive = self._drive(reference.reshape(len(reference), -1), even, odd, self.complex_cell)
        self.drive_offset = drive.mean(axis=0)
        self.drive_scale = drive.std(axis=0) + 1e-6

    def pupil_state(self, behavior: np.ndarray) -> np.ndarray:
        """Pupil state in [0, 1] of each trial, shape (trials,), quantised to 16 levels."""
        z = (behavior[:, 0] - self.behavior_mean[0]) / self.behavior_std[0]
        level = np.minimum((ndtr(z) * PUPIL_LEVELS).astype(int), PUPIL_LEVELS - 1)
        return (level + 0.5) / PUPIL_LEVELS

    def mean_response(
        self,
        images: np.ndarray,
        behavior: np.ndarray | None = None,
        gaze: np.ndarray | None = None,
        chunk: int = 1000,
    ) -> np.ndarray:
        """True mean response of every neuron to every image.

        Parameters
        ----------
        images : numpy.ndarray, shape (n, height, width) or (n, 1, height, width)
            The images on the screen.
        behavior : numpy.ndarray, shape (n, 3) or (1, 3), optional
            Pupil, pupil change and running speed; ``None`` is the average state (z = 0,
            pupil state 1/2).
        gaze : numpy.ndarray, shape (n, 2) or (1, 2), optional
            Eye position (x, y) in pixels; the image is shifted circularly, so give images whose
            content continues past the edges (or gaze ``None``, no shift).
        chunk : int
            Images a block (bounds memory).

        Returns
        -------
        numpy.ndarray, shape (n, neurons)
        """
        if self.drive_scale is None:
            raise DataError("population", "a calibrated population (call calibrate first)", "uncalibrated")
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        if images.ndim != 3 or images.shape[1:] != tuple(self.image_size):
            raise DataError("images", f"shape (n, {self.image_size[0]}, {self.image_size[1]})", f"{images.shape}")
        n = len(images)
        if behavior is None:
            z = np.zeros((n, 3))
            pupil = np.full(n, 0.5)
        else:
            behavior = np.broadcast_to(np.asarray(behavior, dtype=np.float64), (n, 3))
            z = (behavior - self.behavior_mean) / self.behavior_std
            pupil = self.pupil_state(behavior)
        if gaze is not None:
            gaze = np.broadcast_to(np.asarray(gaze, dtype=np.float64), (n, 2))
        everyone = np.arange(self.n_neurons)
        even, odd = self._bank(everyone, self.orientation)
        shifted = np.flatnonzero(self.shifted)
        levels = np.round(pupil * PUPIL_LEVELS - 0.5).astype(int)
        banks = {}
        for lvl in np.unique(levels) if len(shifted) else []:  # at most 16 pupil levels
            theta = self.orientation[shifted] + self.orientation_shift[shifted] * ((lvl + 0.5) / PUPIL_LEVELS - 0.5)
            banks[lvl] = self._bank(shifted, theta)
        out = np.empty((n, self.n_neurons))
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            seen = images[sl] if gaze is None else shift_images(images[sl], gaze[sl])
            flat = seen.reshape(len(seen), -1)
            drive = self._drive(flat, even, odd, self.complex_cell)
            for lvl, (e, o) in banks.items():
                rows = np.flatnonzero(levels[sl] == lvl)
                if len(rows):
                    drive[np.ix_(rows, shifted)] = self._drive(flat[rows], e, o, self.complex_cell[shifted])
            out[sl] = firing_rate(drive, self, z[sl])
        return out


def firing_rate(drive: np.ndarray, neurons, z: np.ndarray) -> np.ndarray:
    """``a_i softplus(2 ((d - m_i) / s_i - b_i)) exp(w_i . z)``: the simulated neurons' output.

    Parameters
    ----------
    drive : numpy.ndarray, shape (..., neurons)
    neurons
        Holds ``drive_offset``, ``drive_scale``, ``threshold``, ``amplitude`` (neurons,) and
        ``behavior_weights`` (neurons, 3).
    z : numpy.ndarray, shape (..., 3)
        Standardised behaviour.
    """
    x = 2.0 * ((drive - neurons.drive_offset) / neurons.drive_scale - neurons.threshold)
    return neurons.amplitude * np.logaddexp(0.0, x) * np.exp(z @ neurons.behavior_weights.T)
