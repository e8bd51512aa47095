"""A ground-truth visual cortex for movies: direction- and speed-tuned simple and complex cells
with space-time oriented receptive fields, temporal kernels with latency, behavioural gain and
saccades.

Neuron i filters the last ``L`` frames (lags tau = 0..L-1) with

    G_i(q, tau) = e_i(q) k_i(tau) [ (1 + d_i) / 2 cos(2 pi (f_i u_i . (q - r_i) + w_i tau) + phi_i)
                                  + (1 - d_i) / 2 cos(2 pi (f_i u_i . (q - r_i) - w_i tau) + phi_i) ]

- ``e_i`` a Gaussian envelope at the receptive field ``r_i`` (sigma ``0.35 / f_i``);
- ``u_i = (cos theta_i, sin theta_i)``, theta_i the preferred direction of motion, ``f_i`` the
  spatial frequency (cycles/pixel), ``w_i = f_i v_i`` the temporal frequency (cycles/frame) of a
  grating moving at the preferred speed ``v_i`` (pixels/frame);
- ``d_i`` in [0, 1] the direction selectivity of the filter (1: a pure space-time oriented
  filter, which responds to motion along ``u_i`` and not against it; 0: a separable one);
- ``k_i(tau) = (tau / l_i)^2 exp(2 (1 - tau / l_i))`` the temporal kernel, peaking at the
  latency ``l_i`` frames.

``G_i`` is mean-free with unit norm over pixels and lags. A simple cell's drive is the filter's
output, a complex (motion-energy) cell's the norm of the quadrature pair (phi_i and phi_i + pi/2).
Frames before a trial's first are blank (grey, 0). The mean response of frame t is
:func:`~probtwin.simulate.population.firing_rate` of the drive: ``a_i softplus(2 ((d - m_i) /
s_i - b_i)) exp(w_i . z_t)`` with ``z_t`` the frame's standardised behaviour.

Movies: natural-like (1/f) scenes moving rigidly with a velocity that changes every
``segment_frames`` frames (random direction, speed up to ``max_speed``); the eye fixates and makes
saccades (jumps to a new position, drawn Normal(0, gaze_std), at rate ``saccade_rate`` per
frame), and sees the screen at ``q + gaze``. Pupil follows an AR(1) over frames, running comes
in bouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.simulate.images import pink_noise_images, shift_images
from probtwin.simulate.noise import LIKELIHOODS, ar1_latent_state, ar1_log_likelihood, observe
from probtwin.simulate.population import firing_rate, receptive_field_geometry
from probtwin.simulate.v1 import Simulation

__all__ = ["VideoPopulation", "temporal_kernel", "video"]

LAGS = 12  # frames each filter sees


def temporal_kernel(latency: np.ndarray, lags: int = LAGS) -> np.ndarray:
    """``k(tau) = (tau / l)^2 exp(2 (1 - tau / l))`` for tau = 0..lags-1, peak 1 at ``tau = l``.

    Parameters
    ----------
    latency : numpy.ndarray, shape (neurons,)
        Frames.

    Returns
    -------
    numpy.ndarray, shape (neurons, lags)
    """
    ratio = np.arange(lags)[None] / np.asarray(latency, dtype=np.float64)[:, None]
    return ratio**2 * np.exp(2 * (1 - ratio))


@dataclass
class VideoPopulation:
    """Parameters of the simulated neurons, each array with neurons first.

    Attributes
    ----------
    rf_position : (neurons, 2) receptive-field centres (x, y), pixels, at zero gaze
    direction : (neurons,) preferred direction of motion, radians in [0, 2 pi)
    spatial_frequency, speed, envelope_sigma, phase, direction_selectivity, latency : (neurons,)
        cycles/pixel, pixels/frame, pixels, radians, in [0, 1], frames
    complex_cell : (neurons,) bool
    amplitude, threshold : (neurons,)
    behavior_weights : (neurons, 3)
    behavior_mean, behavior_std : (3,) standardisation of behaviour
    image_size : (height, width)
    drive_offset, drive_scale : (neurons,) set by :meth:`calibrate`
    """

    rf_position: np.ndarray
    direction: np.ndarray
    spatial_frequency: np.ndarray
    speed: np.ndarray
    envelope_sigma: np.ndarray
    phase: np.ndarray
    direction_selectivity: np.ndarray
    latency: np.ndarray
    complex_cell: np.ndarray
    amplitude: np.ndarray
    threshold: np.ndarray
    behavior_weights: np.ndarray
    behavior_mean: np.ndarray
    behavior_std: np.ndarray
    image_size: tuple[int, int]
    drive_offset: np.ndarray | None = None
    drive_scale: np.ndarray | None = None

    @property
    def n_neurons(self) -> int:
        return len(self.direction)

    @property
    def temporal_frequency(self) -> np.ndarray:
        """Cycles per frame of the preferred grating at the preferred speed, (neurons,)."""
        return self.spatial_frequency * self.speed

    def filters(self) -> tuple[np.ndarray, np.ndarray]:
        """Even and odd (quadrature) space-time filters, mean-free, unit norm.

        Returns
        -------
        even, odd : numpy.ndarray of float32, shape (neurons, lags, height * width)
        """
        along, envelope = receptive_field_geometry(
            self.rf_position, self.direction, self.envelope_sigma, self.image_size
        )
        space = (self.spatial_frequency[:, None, None] * along).reshape(self.n_neurons, 1, -1)  # cycles
        tau = np.arange(LAGS)[None, :, None]
        w = self.temporal_frequency[:, None, None]
        d = self.direction_selectivity[:, None, None]
        kernel = temporal_kernel(self.latency)[:, :, None]
        banks = []
        for offset in (0.0, np.pi / 2):
            phase = self.phase[:, None, None] + offset
            carrier = (1 + d) / 2 * np.cos(2 * np.pi * (space + w * tau) + phase)
            carrier = carrier + (1 - d) / 2 * np.cos(2 * np.pi * (space - w * tau) + phase)
            g = envelope.reshape(self.n_neurons, 1, -1) * kernel * carrier
            g -= g.mean(axis=(1, 2), keepdims=True)
            g /= np.sqrt((g**2).sum(axis=(1, 2), keepdims=True))
            banks.append(g.astype(np.float32))
        return banks[0], banks[1]

    def drive(self, videos: np.ndarray, gaze: np.ndarray | None = None, chunk: int = 32) -> np.ndarray:
        """Each neuron's drive in every frame, (n, frames, neurons): the causal space-time
        filter's output (simple cells) or quadrature energy (complex cells) of what the eye sees."""
        videos = self._check(videos)
        n, frames = videos.shape[:2]
        even, odd = self.filters()
        bank = np.concatenate([even, odd], axis=0).transpose(2, 0, 1).reshape(even.shape[-1], -1)  # (HW, 2 N L)
        out = np.empty((n, frames, self.n_neurons))
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            seen = videos[sl]
            if gaze is not None:  # each frame seen at q + gaze
                g = np.broadcast_to(gaze[sl], (len(seen), frames, 2)).reshape(-1, 2)
                seen = shift_images(seen.reshape(-1, *seen.shape[2:]), g).reshape(seen.shape)
            proj = (seen.reshape(-1, bank.shape[0]) @ bank).reshape(len(seen), frames, 2, self.n_neurons, LAGS)
            filtered = np.zeros((len(seen), frames, 2, self.n_neurons))
            for tau in range(min(LAGS, frames)):  # frame t sees frame t - tau through lag tau
                filtered[:, tau:] += proj[:, : frames - tau, :, :, tau]
            energy = np.sqrt(filtered[:, :, 0] ** 2 + filtered[:, :, 1] ** 2)
            out[sl] = np.where(self.complex_cell, energy, filtered[:, :, 0])
        return out

    def calibrate(self, videos: np.ndarray, gaze: np.ndarray | None = None) -> None:
        """Set ``drive_offset`` and ``drive_scale`` from reference movies (n, frames, H, W)."""
        drive = self.drive(videos, gaze).reshape(-1, self.n_neurons)
        self.drive_offset = drive.mean(axis=0)
        self.drive_scale = drive.std(axis=0) + 1e-6

    def mean_response(
        self, videos: np.ndarray, behavior: np.ndarray | None = None, gaze: np.ndarray | None = None
    ) -> np.ndarray:
        """True mean response of every neuron in every frame.

        Parameters
        ----------
        videos : numpy.ndarray, shape (n, frames, height, width) or (n, 1, frames, height, width)
        behavior : numpy.ndarray, shape (n, frames, 3), (n, 3) or (1, 3), optional
            Pupil, pupil change and running speed per frame (or per movie); ``None``: the average
            state.
        gaze : numpy.ndarray, shape (n, frames, 2) or (n, 1, 2), optional
            Eye position (x, y), pixels; ``None``: no eye movement.

        Returns
        -------
        numpy.ndarray, shape (n, frames, neurons)
        """
        if self.drive_scale is None:
            raise DataError("population", "a calibrated population (call calibrate first)", "uncalibrated")
        videos = self._check(videos)
        n, frames = videos.shape[:2]
        if behavior is None:
            z = np.zeros((n, frames, 3))
        else:
            behavior = np.asarray(behavior, dtype=np.float64)
            behavior = behavior[:, None] if behavior.ndim == 2 else behavior
            z = (np.broadcast_to(behavior, (n, frames, 3)) - self.behavior_mean) / self.behavior_std
        return firing_rate(self.drive(videos, gaze), self, z)

    def _check(self, videos: np.ndarray) -> np.ndarray:
        videos = np.asarray(videos, dtype=np.float32)
        if videos.ndim == 5 and videos.shape[1] == 1:
            videos = videos[:, 0]
        if videos.ndim != 4 or videos.shape[2:] != tuple(self.image_size):
            expected = f"shape (n, frames, {self.image_size[0]}, {self.image_size[1]})"
            raise DataError("videos", expected, f"{videos.shape}")
        return videos


def _movies(
    n: int, frames: int, size: tuple[int, int], rng: np.random.Generator, segment: int, max_speed: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scenes moving rigidly, the velocity redrawn every ``segment`` frames: movies (n, frames,
    H, W) and the scene's displacement (n, frames, 2) in pixels."""
    segments = -(-frames // segment)
    angle = rng.uniform(0, 2 * np.pi, (n, segments))
    speed = rng.uniform(0, max_speed, (n, segments))
    velocity = np.stack([np.cos(angle), np.sin(angle)], -1) * speed[..., None]
    velocity = np.repeat(velocity, segment, axis=1)[:, :frames]
    displacement = np.cumsum(velocity, axis=1) - velocity[:, :1]
    scenes = pink_noise_images(n, size, rng)
    moved = shift_images(np.repeat(scenes, frames, axis=0), displacement.reshape(-1, 2))
    return moved.reshape(n, frames, *size), displacement


def _saccades(n: int, frames: int, rng: np.random.Generator, rate: float, std: float) -> np.ndarray:
    """Fixations with jumps: eye position (n, frames, 2), a new one drawn at each saccade."""
    if std <= 0:
        return np.zeros((n, frames, 2))
    jumps = rng.uniform(size=(n, frames)) < rate
    jumps[:, 0] = True
    fixation = np.cumsum(jumps, axis=1) - 1  # which fixation each frame is in
    positions = rng.normal(0, std, (n, frames, 2))
    return np.take_along_axis(positions, fixation[..., None].repeat(2, -1), axis=1)


def video(
    n_neurons: int = 100,
    n_trials: int = 120,
    n_frames: int = 60,
    image_size: tuple[int, int] = (24, 32),
    seed: int = 0,
    *,
    likelihood: str = "poisson",
    correlated_noise_rank: int = 0,
    noise_scale: float = 1.0,
    latent_ar1: float = 0.0,
    repeats: int = 1,
    complex_fraction: float = 0.3,
    rf_scatter: float = 1.0,
    gaze_std: float = 1.0,
    saccade_rate: float = 0.05,
    segment_frames: int = 15,
    max_speed: float = 2.5,
    behavior_gain: float = 0.2,
    mean_rate: float = 0.5,
) -> Simulation:
    """Simulate a population's per-frame responses to natural-like movies.

    Parameters
    ----------
    n_neurons : int
    n_trials : int
        Distinct movies (trials = ``n_trials * repeats``).
    n_frames : int
        Frames per trial.
    image_size : (int, int)
        Height and width in pixels.
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    likelihood, correlated_noise_rank, noise_scale
        Observation model, per frame (see :mod:`probtwin.simulate.noise`; a latent state is drawn
        per frame).
    latent_ar1 : float in [0, 1)
        The latent state's correlation from one frame to the next (each dimension a stationary
        AR(1) process, :func:`probtwin.simulate.noise.ar1_latent_state`); 0: drawn anew each
        frame. ``log_likelihood`` is then the frames' exact joint density.
    repeats : int
        Presentations of each movie (in random order; behaviour and gaze differ between them).
    complex_fraction : float in [0, 1]
        Fraction of complex (motion-energy) cells.
    rf_scatter, gaze_std : float
        Pixels: receptive fields around the retinotopic map; fixation positions (0: the eye stays).
    saccade_rate : float
        Saccades per frame.
    segment_frames, max_speed : int, float
        Frames between changes of the scene's velocity; its largest speed (pixels/frame).
    behavior_gain : float
        Scale of the behavioural gain weights.
    mean_rate : float
        Typical mean response per frame (spikes for Poisson).

    Returns
    -------
    Simulation
        ``recording``: videos (trials, 1, frames, H, W) with responses (trials, frames, neurons),
        behaviour (trials, frames, 3) and gaze (trials, frames, 2). ``truth``: the keys of
        :func:`probtwin.simulate.v1` where they mean the same (``rf_position``,
        ``spatial_frequency``, ``envelope_sigma``, ``phase``, ``complex_cell``, ``amplitude``,
        ``threshold``, ``drive_offset``, ``drive_scale``, ``behavior_weights``, ``gaze``,
        ``mean_response`` (trials, frames, neurons), ``log_likelihood`` (trials,), the noise
        parameters), and ``direction`` (radians, [0, 2 pi)), ``speed``, ``temporal_frequency``,
        ``direction_selectivity``, ``latency`` (frames), ``temporal_kernel`` (neurons, lags),
        ``displacement`` (trials, frames, 2: the scene's motion). ``sim.respond(videos,
        behavior, gaze)`` gives the true mean response to any movie.

    Examples
    --------
    >>> sim = video(n_neurons=10, n_trials=4, n_frames=20, seed=1)
    >>> sim.recording.responses.shape
    (4, 20, 10)
    """
    if likelihood not in LIKELIHOODS:
        raise DataError("likelihood", f"one of {LIKELIHOODS}", repr(likelihood))
    for name, value in (("n_neurons", n_neurons), ("n_trials", n_trials), ("repeats", repeats)):
        if int(value) != value or value < 1:
            raise DataError(name, "a positive integer", repr(value))
    if int(n_frames) != n_frames or n_frames < LAGS:
        raise DataError("n_frames", f"an integer of at least {LAGS} (the filters' lags)", repr(n_frames))
    if not 0 <= complex_fraction <= 1:
        raise DataError("complex_fraction", "a fraction in [0, 1]", repr(complex_fraction))
    if not 0 <= latent_ar1 < 1:
        raise DataError("latent_ar1", "a correlation in [0, 1)", repr(latent_ar1))
    if latent_ar1 and correlated_noise_rank < 1:
        raise DataError("latent_ar1", "0 with correlated_noise_rank=0 (no latent state)", repr(latent_ar1))
    height, width = image_size
    if min(height, width) < 8:
        raise DataError("image_size", "at least 8 x 8 pixels", repr(image_size))
    rng = np.random.default_rng(seed)
    total = n_trials * repeats

    coords = np.column_stack([rng.uniform(0, 1000, (n_neurons, 2)), rng.uniform(200, 400, n_neurons)])
    margin = np.array([width, height]) * 0.25
    span = np.array([width, height]) - 2 * margin
    rf = margin + span * coords[:, :2] / 1000 + rng.normal(0, rf_scatter, (n_neurons, 2))
    frequency = rng.uniform(0.08, 0.16, n_neurons)
    population = VideoPopulation(
        rf_position=rf,
        direction=rng.uniform(0, 2 * np.pi, n_neurons),
        spatial_frequency=frequency,
        speed=rng.uniform(0.5, 2.0, n_neurons),
        envelope_sigma=0.35 / frequency,
        phase=rng.uniform(0, 2 * np.pi, n_neurons),
        direction_selectivity=rng.uniform(0.0, 1.0, n_neurons),
        latency=rng.uniform(1.5, 4.0, n_neurons),
        complex_cell=rng.uniform(size=n_neurons) < complex_fraction,
        amplitude=mean_rate * rng.lognormal(0.0, 0.3, n_neurons),
        threshold=rng.uniform(0.0, 1.0, n_neurons),
        behavior_weights=behavior_gain
        * np.column_stack(
            [rng.normal(1.0, 0.5, n_neurons), rng.normal(0, 0.5, n_neurons), rng.normal(0.5, 0.5, n_neurons)]
        ),
        behavior_mean=np.zeros(3),
        behavior_std=np.ones(3),
        image_size=(height, width),
    )

    movies, displacement = _movies(n_trials, n_frames, (height, width), rng, segment_frames, max_speed)
    order = rng.permutation(np.repeat(np.arange(n_trials), repeats))
    gaze = _saccades(total, n_frames, rng, saccade_rate, gaze_std)
    innovations = rng.standard_normal((total, n_frames)) * np.sqrt(1 - 0.95**2)
    innovations[:, 0] = rng.standard_normal(total)
    pupil_z = lfilter([1.0], [1.0, -0.95], innovations, axis=1)  # stationary AR(1) over frames
    bouts = lfilter([0.2], [1.0, -0.8], rng.standard_normal((total, n_frames)), axis=1)
    running = np.clip(bouts, 0, None) * 10.0
    pupil = 20.0 + 4.0 * pupil_z
    behavior = np.stack([pupil, np.concatenate([np.zeros((total, 1)), np.diff(pupil, axis=1)], 1), running], -1)
    population.behavior_mean = behavior.reshape(-1, 3).mean(axis=0)
    population.behavior_std = behavior.reshape(-1, 3).std(axis=0)
    shown = movies[order]
    reference = slice(0, min(total, 40))
    population.calibrate(shown[reference], gaze[reference])
    mean_response = population.mean_response(shown, behavior, gaze)

    latent = None
    if latent_ar1:
        latent = ar1_latent_state(total, n_frames, correlated_noise_rank, latent_ar1, rng).reshape(total * n_frames, -1)
    flat, log_likelihood, noise = observe(
        mean_response.reshape(-1, n_neurons), likelihood, correlated_noise_rank, rng, noise_scale, latent=latent
    )
    if log_likelihood is not None:
        log_likelihood = log_likelihood.reshape(total, n_frames).sum(1)
    if latent is not None and log_likelihood is not None:  # the frames scored jointly
        z = flat if likelihood == "normal" else np.log1p(flat)
        jacobian = np.zeros(total) if likelihood == "normal" else -z.reshape(total, -1).sum(1)
        residual = (z - noise["latent_mean"]).reshape(total, n_frames, n_neurons)
        loadings, private = noise["latent_loadings"], noise["private_variance"]
        log_likelihood = ar1_log_likelihood(residual, loadings, private, latent_ar1) + jacobian
    responses = flat.reshape(total, n_frames, n_neurons)
    per_trial = dict(noise)
    for key in ("latent_state", "latent_mean", "log_likelihood_given_latent"):  # per frame: (trials, frames, ...)
        if key in per_trial:
            per_trial[key] = per_trial[key].reshape(total, n_frames, *per_trial[key].shape[1:])
    if "log_likelihood_given_latent" in per_trial:
        per_trial["log_likelihood_given_latent"] = per_trial["log_likelihood_given_latent"].sum(1)
    recording = Recording(
        shown[:, None],
        responses,
        behavior=behavior,
        gaze=gaze,
        neuron_coords=coords,
        neuron_area=np.full(n_neurons, "V1"),
        stimulus_ids=order,
        name=f"simulated_video_seed{seed}",
    )
    p = population
    truth = {
        "rf_position": p.rf_position,
        "direction": p.direction,
        "spatial_frequency": p.spatial_frequency,
        "speed": p.speed,
        "temporal_frequency": p.temporal_frequency,
        "envelope_sigma": p.envelope_sigma,
        "phase": p.phase,
        "direction_selectivity": p.direction_selectivity,
        "latency": p.latency,
        "temporal_kernel": temporal_kernel(p.latency),
        "complex_cell": p.complex_cell,
        "amplitude": p.amplitude,
        "threshold": p.threshold,
        "drive_offset": p.drive_offset,
        "drive_scale": p.drive_scale,
        "behavior_weights": p.behavior_weights,
        "gaze": gaze,
        "displacement": displacement[order],
        "mean_response": mean_response,
        **({} if log_likelihood is None else {"log_likelihood": log_likelihood}),
        **per_trial,
    }
    config = dict(
        n_neurons=n_neurons,
        n_trials=n_trials,
        n_frames=n_frames,
        image_size=tuple(image_size),
        seed=seed,
        likelihood=likelihood,
        correlated_noise_rank=correlated_noise_rank,
        noise_scale=noise_scale,
        latent_ar1=latent_ar1,
        repeats=repeats,
        complex_fraction=complex_fraction,
        rf_scatter=rf_scatter,
        gaze_std=gaze_std,
        saccade_rate=saccade_rate,
        segment_frames=segment_frames,
        max_speed=max_speed,
        behavior_gain=behavior_gain,
        mean_rate=mean_rate,
    )
    return Simulation(recording, truth, population, config)
