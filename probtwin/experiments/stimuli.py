"""Stimulus families for in-silico experiments: gratings, Gabors and sparse noise; for video
twins, drifting gratings, moving bars and flashes.

Each returns a :class:`StimulusSet`, the images (or movies) and a table of the parameters of each,
which the experiments read (the orientation of each grating, the position of each square).

Conventions, shared with :mod:`probtwin.simulate`: pixel ``(x, y)`` has its centre at integer
coordinates, x to the right and y down; an orientation ``theta`` (radians, in [0, pi)) is the
direction of the carrier's wave vector ``(cos theta, sin theta)`` (the bars run perpendicular to
it); spatial frequency is in cycles per pixel; the phase is that of the cosine carrier at the
image centre (gratings) or at the Gabor's centre. A direction of motion ``theta`` (radians, in
[0, 2 pi)) moves the pattern along ``(cos theta, sin theta)``; temporal frequency is in cycles
per frame, speed in pixels per frame.

Pixel values: ``mean + contrast * std * pattern`` per channel, with ``pattern`` of unit
root-mean-square for full-field gratings (a cosine of amplitude sqrt(2)). With a twin, ``mean``
and ``std`` are the pixel statistics of its training images, so that ``contrast=1`` matches
their typical contrast, and ``size`` and ``channels`` are the twin's input; without a twin,
mean 0 and std 1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from probtwin.errors import DataError

__all__ = ["StimulusSet", "drifting_gratings", "flashes", "gabors", "gratings", "moving_bars", "sparse_noise"]


@dataclass
class StimulusSet:
    """Images and the parameters that made them.

    Attributes
    ----------
    images : numpy.ndarray of float32, shape (n, channels, height, width)
        Or movies, shape (n, channels, frames, height, width).
    parameters : pandas.DataFrame, n rows
        One column per stimulus parameter (e.g. ``orientation``, ``spatial_frequency``,
        ``phase``), in the units of the generator that made the set.
    """

    images: np.ndarray
    parameters: pd.DataFrame

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        if self.images.ndim not in (4, 5):
            expected = "an array (n, channels, height, width), or movies (n, channels, frames, height, width)"
            raise DataError("images", expected, f"shape {self.images.shape}")
        if not isinstance(self.parameters, pd.DataFrame) or len(self.parameters) != len(self.images):
            raise DataError(
                "parameters",
                f"a pandas DataFrame with one row per image ({len(self.images)})",
                f"{type(self.parameters).__name__} of length {len(self.parameters)}",
            )
        if not np.all(np.isfinite(self.images)):
            raise DataError("images", "finite pixel values", "NaN or infinite values")
        self.parameters = self.parameters.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        kind = "movies" if self.images.ndim == 5 else "images"
        return f"StimulusSet({len(self)} {kind} {self.images.shape[1:]}, parameters {list(self.parameters.columns)})"

    def is_grid(self) -> bool:
        """Whether the parameters form a full factorial grid (each combination once)."""
        return is_grid(self.parameters)


def is_grid(table: pd.DataFrame) -> bool:
    """Whether a table's rows are a full factorial grid of its columns' values, each once."""
    sizes = [table[c].nunique() for c in table.columns]
    return not table.duplicated().any() and int(np.prod(sizes)) == len(table)


def _frame(twin: Any, size, channels, session) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Size, and per-channel mean and std of the pixels, from the arguments or the twin (of
    images, or of videos: their frames')."""
    if twin is not None:
        k = twin.session_index(session)
        shape = list(twin.specs[k].stimulus_shape)
        if len(shape) == 4:
            shape = [shape[0], *shape[2:]]  # channels, height, width of a video's frames
        if len(shape) != 3:
            raise DataError("twin", "a twin of images or videos", f"stimuli of shape {tuple(shape)}")
        channels = shape[0] if channels is None else channels
        size = tuple(shape[1:]) if size is None else size
        if channels != shape[0] or tuple(size) != tuple(shape[1:]):
            raise DataError("size, channels", f"the twin's input {tuple(shape)}", f"{channels} x {tuple(size)}")
        mean = getattr(twin, f"stim_mean_{k}").cpu().numpy().astype(np.float64)
        std = getattr(twin, f"stim_std_{k}").cpu().numpy().astype(np.float64)
        return (int(size[0]), int(size[1])), mean, std
    if size is None:
        raise DataError("size", "(height, width) when no twin is given", "None")
    channels = 1 if channels is None else channels
    if int(channels) != channels or channels < 1:
        raise DataError("channels", "a positive integer", repr(channels))
    size = tuple(int(v) for v in size)
    if len(size) != 2 or min(size) < 1:
        raise DataError("size", "(height, width) in pixels", repr(size))
    return size, np.zeros(int(channels)), np.ones(int(channels))


def _values(name: str, values: Any, low: float | None = None) -> np.ndarray:
    out = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if out.ndim != 1 or len(out) == 0 or not np.all(np.isfinite(out)):
        raise DataError(name, "a non-empty list of finite numbers", repr(values))
    if low is not None and np.any(out <= low):
        raise DataError(name, f"values above {low}", repr(values))
    return out


def _phases(phases: int | Any) -> np.ndarray:
    if isinstance(phases, (int, np.integer)):
        if phases < 1:
            raise DataError("phases", "a positive count or a list of phases (radians)", repr(phases))
        return 2 * np.pi * np.arange(phases) / phases
    return _values("phases", phases)


def _carrier(size, centre, orientation, frequency, phase) -> np.ndarray:
    """``cos(2 pi f (q - c) . u(theta) + phi)`` for each row, (n, height, width)."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    dx = x[None] - centre[:, 0, None, None]
    dy = y[None] - centre[:, 1, None, None]
    along = dx * np.cos(orientation)[:, None, None] + dy * np.sin(orientation)[:, None, None]
    return np.cos(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])


def _render(pattern: np.ndarray, mean: np.ndarray, std: np.ndarray, contrast: float) -> np.ndarray:
    """Per-channel pixels ``mean + contrast * std * pattern``, (n, channels, height, width)."""
    images = mean[None, :, None, None] + contrast * std[None, :, None, None] * pattern[:, None]
    return images.astype(np.float32)


def _check_contrast(contrast: float) -> float:
    if not np.isfinite(contrast) or contrast < 0:
        raise DataError("contrast", "a non-negative number", repr(contrast))
    return float(contrast)


def gratings(
    orientations: Any,
    spatial_frequencies: Any = (0.1,),
    phases: int | Any = 4,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    *,
    contrast: float = 1.0,
    twin: Any = None,
    session: Any = None,
) -> StimulusSet:
    """Full-field sinusoidal gratings, every combination of the parameters.

    Parameters
    ----------
    orientations : array_like
        Radians (direction of the wave vector; ``numpy.linspace(0, numpy.pi, 12,
        endpoint=False)`` for 12 orientations).
    spatial_frequencies : array_like
        Cycles per pixel.
    phases : int or array_like
        A count (evenly spaced in [0, 2 pi)) or phases in radians, at the image centre.
    size : (int, int), optional
        Height and width; default: the twin's.
    channels : int, optional
        Default: the twin's (else 1); every channel carries the same pattern.
    contrast : float
        Root-mean-square contrast in units of the training images' pixel standard deviation.
    twin : Twin, optional
        Supplies size, channels and pixel statistics.
    session : optional
        The twin's session, when it has several.

    Returns
    -------
    StimulusSet
        Parameters ``orientation``, ``spatial_frequency``, ``phase``.

    Examples
    --------
    >>> s = gratings(np.linspace(0, np.pi, 4, endpoint=False), phases=2, size=(8, 8))
    >>> s.images.shape, list(s.parameters.columns)
    ((8, 1, 8, 8), ['orientation', 'spatial_frequency', 'phase'])
    """
    size, mean, std = _frame(twin, size, channels, session)
    table = pd.DataFrame(
        list(
            itertools.product(
                _values("orientations", orientations),
                _values("spatial_frequencies", spatial_frequencies, 0.0),
                _phases(phases),
            )
        ),
        columns=["orientation", "spatial_frequency", "phase"],
    )
    centre = np.tile([(size[1] - 1) / 2, (size[0] - 1) / 2], (len(table), 1))
    pattern = np.sqrt(2.0) * _carrier(size, centre, *(table[c].to_numpy() for c in table.columns))
    return StimulusSet(_render(pattern, mean, std, _check_contrast(contrast)), table)


def gabors(
    positions: Any,
    orientations: Any,
    spatial_frequencies: Any = (0.1,),
    sigmas: Any = (4.0,),
    phases: int | Any = 4,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    *,
    contrast: float = 1.0,
    twin: Any = None,
    session: Any = None,
) -> StimulusSet:
    """Gabor patches, every combination of position, orientation, frequency, envelope and phase.

    The pattern is ``sqrt(2) exp(-|q - c|^2 / (2 sigma^2)) cos(2 pi f (q - c) . u(theta) + phi)``
    on the mean background: at its centre, the contrast of a grating.

    Parameters
    ----------
    positions : array_like, shape (p, 2)
        Centres (x, y) in pixels.
    orientations, spatial_frequencies, phases : as :func:`gratings`
    sigmas : array_like
        Envelope standard deviations in pixels.
    size, channels, contrast, twin, session : as :func:`gratings`

    Returns
    -------
    StimulusSet
        Parameters ``x``, ``y``, ``orientation``, ``spatial_frequency``, ``sigma``, ``phase``.
    """
    size, mean, std = _frame(twin, size, channels, session)
    positions = np.atleast_2d(np.asarray(positions, dtype=np.float64))
    if positions.ndim != 2 or positions.shape[1] != 2 or not np.all(np.isfinite(positions)):
        raise DataError("positions", "an array (p, 2) of (x, y) pixel centres", f"shape {positions.shape}")
    rows = itertools.product(
        range(len(positions)),
        _values("orientations", orientations),
        _values("spatial_frequencies", spatial_frequencies, 0.0),
        _values("sigmas", sigmas, 0.0),
        _phases(phases),
    )
    table = pd.DataFrame(list(rows), columns=["position", "orientation", "spatial_frequency", "sigma", "phase"])
    centre = positions[table.pop("position").to_numpy()]
    table.insert(0, "y", centre[:, 1])
    table.insert(0, "x", centre[:, 0])
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    envelope = np.exp(
        -((x[None] - centre[:, 0, None, None]) ** 2 + (y[None] - centre[:, 1, None, None]) ** 2)
        / (2 * table["sigma"].to_numpy()[:, None, None] ** 2)
    )
    carrier = _carrier(size, centre, *(table[c].to_numpy() for c in ("orientation", "spatial_frequency", "phase")))
    pattern = np.sqrt(2.0) * envelope * carrier
    return StimulusSet(_render(pattern, mean, std, _check_contrast(contrast)), table)


def sparse_noise(
    block: int = 2,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    *,
    contrast: float = 3.0,
    twin: Any = None,
    session: Any = None,
) -> StimulusSet:
    """One bright and one dark square at every position of a grid, on the mean background.

    Parameters
    ----------
    block : int
        Side of the squares in pixels; they tile the image (positions every ``block`` pixels).
    size, channels, twin, session : as :func:`gratings`
    contrast : float
        The squares' deviation from the mean, in pixel standard deviations.

    Returns
    -------
    StimulusSet
        Parameters ``x``, ``y`` (centre of the square, pixels) and ``polarity`` (+1 bright,
        -1 dark); a full grid.
    """
    size, mean, std = _frame(twin, size, channels, session)
    if int(block) != block or block < 1 or block > min(size):
        raise DataError("block", f"a whole number of pixels in [1, {min(size)}]", repr(block))
    block = int(block)
    height, width = size
    rows_y = np.arange(0, height - block + 1, block)
    cols_x = np.arange(0, width - block + 1, block)
    top, left, polarity = (a.ravel() for a in np.meshgrid(rows_y, cols_x, [1.0, -1.0], indexing="ij"))
    pattern = np.zeros((len(top), height, width))
    yy = top[:, None, None] + np.arange(block)[None, :, None]
    xx = left[:, None, None] + np.arange(block)[None, None, :]
    pattern[np.arange(len(top))[:, None, None], yy, xx] = polarity[:, None, None]
    table = pd.DataFrame(
        {"y": top + (block - 1) / 2, "x": left + (block - 1) / 2, "polarity": polarity.astype(int)},
        columns=["y", "x", "polarity"],
    )
    return StimulusSet(_render(pattern, mean, std, _check_contrast(contrast)), table)


def _movie_frames(twin: Any, frames: int | None, session: Any) -> int:
    if frames is None:
        shape = None if twin is None else twin.specs[twin.session_index(session)].stimulus_shape
        if shape is None or len(shape) != 4:
            raise DataError("frames", "a number of frames (or a twin of videos)", "None")
        frames = shape[1]
    if int(frames) != frames or frames < 1:
        raise DataError("frames", "a positive number of frames", repr(frames))
    return int(frames)


def _render_movies(pattern: np.ndarray, mean: np.ndarray, std: np.ndarray, contrast: float) -> np.ndarray:
    """Per-channel movies ``mean + contrast * std * pattern``, pattern (n, frames, H, W) ->
    (n, channels, frames, height, width)."""
    movies = mean[None, :, None, None, None] + contrast * std[None, :, None, None, None] * pattern[:, None]
    return movies.astype(np.float32)


def drifting_gratings(
    directions: Any,
    spatial_frequencies: Any = (0.1,),
    temporal_frequencies: Any = (0.1,),
    phases: int | Any = 4,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    *,
    contrast: float = 1.0,
    twin: Any = None,
    session: Any = None,
) -> StimulusSet:
    """Full-field gratings drifting along each direction, every combination of the parameters.

    Frame ``t`` shows ``sqrt(2) cos(2 pi (f (q - c) . u(theta) - w t) + phi)``: the bars move
    along ``u(theta)`` at ``w / f`` pixels per frame.

    Parameters
    ----------
    directions : array_like
        Radians in [0, 2 pi) (``numpy.linspace(0, 2 * numpy.pi, 12, endpoint=False)``).
    spatial_frequencies : array_like
        Cycles per pixel.
    temporal_frequencies : array_like
        Cycles per frame.
    phases : int or array_like
        Starting phases (a count, evenly spaced, or radians).
    frames : int, optional
        Movie length; default: the twin's trials'.
    size, channels, contrast, twin, session : as :func:`gratings` (the twin a video twin)

    Returns
    -------
    StimulusSet
        Movies (n, channels, frames, H, W); parameters ``direction``, ``spatial_frequency``,
        ``temporal_frequency``, ``phase``.
    """
    size, mean, std = _frame(twin, size, channels, session)
    frames = _movie_frames(twin, frames, session)
    rows = itertools.product(
        _values("directions", directions),
        _values("spatial_frequencies", spatial_frequencies, 0.0),
        _values("temporal_frequencies", temporal_frequencies),
        _phases(phases),
    )
    table = pd.DataFrame(list(rows), columns=["direction", "spatial_frequency", "temporal_frequency", "phase"])
    centre = np.tile([(size[1] - 1) / 2, (size[0] - 1) / 2], (len(table), 1))
    t = np.arange(frames)
    phase = table["phase"].to_numpy()[:, None] - 2 * np.pi * table["temporal_frequency"].to_numpy()[:, None] * t
    n = len(table)
    pattern = _carrier(
        size,
        np.repeat(centre, frames, 0),
        np.repeat(table["direction"].to_numpy(), frames),
        np.repeat(table["spatial_frequency"].to_numpy(), frames),
        phase.ravel(),
    ).reshape(n, frames, *size)
    return StimulusSet(_render_movies(np.sqrt(2.0) * pattern, mean, std, _check_contrast(contrast)), table)


def moving_bars(
    directions: Any,
    widths: Any = (3.0,),
    speeds: Any = (1.0,),
    polarities: Any = (1, -1),
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    *,
    contrast: float = 3.0,
    twin: Any = None,
    session: Any = None,
) -> StimulusSet:
    """A bright or dark bar sweeping across the screen along each direction.

    The bar runs perpendicular to ``u(theta)``; its centre starts where it just touches the
    screen's far side behind ``u(theta)`` and moves ``speed`` pixels a frame.

    Parameters
    ----------
    directions : array_like
        Radians in [0, 2 pi).
    widths : array_like
        Bar widths in pixels.
    speeds : array_like
        Pixels per frame.
    polarities : array_like
        +1 bright, -1 dark.
    frames, size, channels, twin, session : as :func:`drifting_gratings`
    contrast : float
        The bar's deviation from the mean, in pixel standard deviations.

    Returns
    -------
    StimulusSet
        Parameters ``direction``, ``width``, ``speed``, ``polarity``.
    """
    size, mean, std = _frame(twin, size, channels, session)
    frames = _movie_frames(twin, frames, session)
    polarity = _values("polarities", polarities)
    if not np.all(np.isin(polarity, (-1, 1))):
        raise DataError("polarities", "+1 (bright) and/or -1 (dark)", repr(polarities))
    rows = itertools.product(
        _values("directions", directions), _values("widths", widths, 0.0), _values("speeds", speeds, 0.0), polarity
    )
    table = pd.DataFrame(list(rows), columns=["direction", "width", "speed", "polarity"])
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = table["direction"].to_numpy()[:, None, None, None]
    along = (x - (width - 1) / 2) * np.cos(theta) + (y - (height - 1) / 2) * np.sin(theta)  # (n, 1, H, W)
    reach = (np.abs(np.cos(theta)) * (width - 1) + np.abs(np.sin(theta)) * (height - 1)) / 2  # half the extent
    half = table["width"].to_numpy()[:, None, None, None] / 2
    centre = -reach - half + table["speed"].to_numpy()[:, None, None, None] * np.arange(frames)[None, :, None, None]
    pattern = (np.abs(along - centre) <= half) * table["polarity"].to_numpy()[:, None, None, None]
    table["polarity"] = table["polarity"].astype(int)
    return StimulusSet(_render_movies(pattern.astype(np.float64), mean, std, _check_contrast(contrast)), table)


def flashes(stimuli: StimulusSet, frames: int | None = None, *, twin: Any = None, session: Any = None) -> StimulusSet:
    """Each image of a set shown for one frame, then the mean screen: the impulse response that
    a neuron's latency and temporal kernel are read from.

    Parameters
    ----------
    stimuli : StimulusSet
        Images, e.g. ``gratings(..., twin=video_twin)`` (the frames' size and pixel statistics).
    frames : int, optional
        Movie length; default: the twin's trials'.
    twin, session : optional
        A video twin, for the default ``frames``.

    Returns
    -------
    StimulusSet
        Movies (n, channels, frames, H, W), the first frame the image, the others its set's
        background (the mean over the set); the same parameters.
    """
    if not isinstance(stimuli, StimulusSet) or stimuli.images.ndim != 4:
        raise DataError("stimuli", "a StimulusSet of images", repr(stimuli))
    frames = _movie_frames(twin, frames, session)
    background = stimuli.images.mean(axis=(0, 2, 3), keepdims=True)  # per channel
    movies = np.broadcast_to(
        background[:, :, None], (len(stimuli), stimuli.images.shape[1], frames, *stimuli.images.shape[2:])
    ).copy()
    movies[:, :, 0] = stimuli.images
    return StimulusSet(movies, stimuli.parameters.copy())
