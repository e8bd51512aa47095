"""A ground-truth primary visual cortex: Gabor and energy-model neurons with retinotopy,
behavioural gain, gaze-shifted receptive fields and known noise.

The neurons are a :class:`~probtwin.simulate.population.V1Population` (its docstring has the
response model); this module draws the session: cortical positions and a linear retinotopic map
with scatter (``r_i = margin + span * c_i / 1 mm + scatter``), natural-like images, the order of
presentations, an AR(1) pupil over trials, running bouts, eye positions, and the responses through
:func:`probtwin.simulate.noise.observe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer.progress import progress
from probtwin.simulate.images import pink_noise_images, shift_images
from probtwin.simulate.noise import LIKELIHOODS, observe
from probtwin.simulate.population import V1Population

__all__ = ["Simulation", "v1"]


@dataclass
class Simulation:
    """A simulated recording and the truth behind it.

    Attributes
    ----------
    recording : Recording
    truth : dict of str to numpy.ndarray
        Every parameter of the simulator and the true mean response of every trial.
    config : dict
        The arguments of the simulator.
    """

    recording: Recording
    truth: dict[str, np.ndarray]
    population: V1Population
    config: dict = field(default_factory=dict)

    def respond(
        self,
        images: np.ndarray,
        behavior: np.ndarray | None = None,
        gaze: np.ndarray | None = None,
    ) -> np.ndarray:
        """True mean responses of the simulated neurons to new images, shape (n, neurons).

        See :meth:`V1Population.mean_response`; ``behavior=None`` is the average state.
        """
        return self.population.mean_response(images, behavior, gaze)

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.truth))
        return f"Simulation(\n{self.recording!r}\n  truth: {keys})"


def v1(
    n_neurons: int = 200,
    n_images: int = 2000,
    repeats: int = 1,
    image_size: tuple[int, int] = (36, 64),
    seed: int = 0,
    *,
    likelihood: str = "poisson",
    correlated_noise_rank: int = 0,
    noise_scale: float = 1.0,
    latent_pupil_correlation: float = 0.0,
    pupil_shift_fraction: float = 0.0,
    pupil_shift_degrees: float = 30.0,
    complex_fraction: float = 0.3,
    rf_scatter: float = 1.0,
    gaze_std: float = 1.0,
    behavior_gain: float = 0.2,
    mean_rate: float = 1.0,
    chunk: int = 1000,
) -> Simulation:
    """Simulate a V1 population's responses to natural-like images.

    Parameters
    ----------
    n_neurons, n_images : int
        Population size and number of distinct images.
    repeats : int
        Presentations of each image (trials = ``n_images * repeats``, in random order).
    image_size : (int, int)
        Height and width in pixels.
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    likelihood : {"poisson", "zig", "normal", "lognormal"}
        Observation model (see :mod:`probtwin.simulate.noise`).
    correlated_noise_rank : int
        Rank of the shared latent state (``"normal"``, ``"lognormal"`` and ``"poisson"``; see
        :mod:`probtwin.simulate.noise`).
    noise_scale : float
        Multiplies the Gaussian models' noise variance (the Poisson latent state's log-rate
        variance).
    latent_pupil_correlation : float in [-1, 1]
        Correlation of the first latent dimension with the standardised pupil size (an arousal
        state shared by the population, as in mouse V1).
    pupil_shift_fraction : float in [0, 1]
        Fraction of neurons whose preferred orientation changes with pupil.
    pupil_shift_degrees : float
        Their change of preferred orientation from the smallest to the largest pupil.
    complex_fraction : float in [0, 1]
        Fraction of complex (energy-model) cells.
    rf_scatter : float
        Standard deviation (pixels) of receptive fields around the retinotopic map.
    gaze_std : float
        Standard deviation (pixels) of eye position; 0 for no eye movements.
    behavior_gain : float
        Scale of the behavioural gain weights.
    mean_rate : float
        Typical mean response (spikes per trial for Poisson).
    chunk : int
        Trials processed at a time (bounds memory).

    Returns
    -------
    Simulation
        ``truth`` holds ``rf_position`` (neurons, 2) as (x, y) pixels at zero gaze,
        ``orientation`` (neurons,) radians in [0, pi), ``spatial_frequency``, ``envelope_sigma``,
        ``phase``, ``complex_cell``, ``amplitude``, ``threshold``, ``drive_offset``, ``drive_scale``,
        ``behavior_weights`` (neurons, 3), ``shifted`` (neurons,) bool, ``orientation_shift``
        (neurons,) radians, ``pupil_state`` (trials,), ``gaze`` (trials, 2),
        ``mean_response`` (trials, neurons), ``log_likelihood`` (trials,) and the noise
        parameters (``latent_loadings``, ``private_variance``, ``latent_state`` (trials, k) when
        the noise is correlated; for Poisson with a latent state ``log_likelihood_given_latent``
        in place of ``log_likelihood``).

    Examples
    --------
    >>> sim = v1(n_neurons=20, n_images=100, seed=1)
    >>> sim.recording.responses.shape
    (100, 20)
    """
    if likelihood not in LIKELIHOODS:
        raise DataError("likelihood", f"one of {LIKELIHOODS}", repr(likelihood))
    for name, value in (("n_neurons", n_neurons), ("n_images", n_images), ("repeats", repeats)):
        if int(value) != value or value < 1:
            raise DataError(name, "a positive integer", repr(value))
    for name, value in (("pupil_shift_fraction", pupil_shift_fraction), ("complex_fraction", complex_fraction)):
        if not 0 <= value <= 1:
            raise DataError(name, "a fraction in [0, 1]", repr(value))
    height, width = image_size
    if min(height, width) < 8:
        raise DataError("image_size", "at least 8 x 8 pixels", repr(image_size))
    rng = np.random.default_rng(seed)
    n_trials = n_images * repeats

    # Neurons: cortical position -> receptive field (linear retinotopy with scatter).
    coords = np.column_stack([rng.uniform(0, 1000, (n_neurons, 2)), rng.uniform(200, 400, n_neurons)])
    margin = np.array([width, height]) * 0.2
    span = np.array([width, height]) - 2 * margin
    rf = margin + span * coords[:, :2] / 1000 + rng.normal(0, rf_scatter, (n_neurons, 2))
    frequency = rng.uniform(0.08, 0.16, n_neurons)
    shifted = np.zeros(n_neurons, bool)
    shifted[rng.permutation(n_neurons)[: int(round(pupil_shift_fraction * n_neurons))]] = True
    population = V1Population(
        rf_position=rf,
        orientation=rng.uniform(0, np.pi, n_neurons),
        spatial_frequency=frequency,
        envelope_sigma=0.35 / frequency,
        phase=rng.uniform(0, 2 * np.pi, n_neurons),
        complex_cell=rng.uniform(size=n_neurons) < complex_fraction,
        amplitude=mean_rate * rng.lognormal(0.0, 0.3, n_neurons),
        threshold=rng.uniform(0.0, 1.0, n_neurons),
        behavior_weights=behavior_gain
        * np.column_stack(
            [rng.normal(1.0, 0.5, n_neurons), rng.normal(0, 0.5, n_neurons), rng.normal(0.5, 0.5, n_neurons)]
        ),
        orientation_shift=np.where(shifted, np.deg2rad(pupil_shift_degrees), 0.0),
        behavior_mean=np.zeros(3),
        behavior_std=np.ones(3),
        image_size=(height, width),
    )

    # Trials: images, presentation order, behaviour and gaze.
    pad = int(np.ceil(4 * gaze_std)) + 2
    canvas = pink_noise_images(n_images, (height + 2 * pad, width + 2 * pad), rng)
    crop = (slice(None), slice(pad, pad + height), slice(pad, pad + width))
    stimulus_ids = rng.permutation(np.repeat(np.arange(n_images), repeats))
    innovations = rng.standard_normal(n_trials) * np.sqrt(1 - 0.9**2)
    innovations[0] = rng.standard_normal()
    pupil_z = lfilter([1.0], [1.0, -0.9], innovations)  # stationary AR(1) over trials
    running = np.abs(rng.standard_normal(n_trials)) * (rng.uniform(size=n_trials) < 0.4)
    pupil = 20.0 + 4.0 * pupil_z
    behavior = np.column_stack([pupil, np.r_[0.0, np.diff(pupil)], running * 10.0])
    population.behavior_mean = behavior.mean(axis=0)
    population.behavior_std = behavior.std(axis=0)
    gaze = rng.normal(0, gaze_std, (n_trials, 2)) if gaze_std > 0 else np.zeros((n_trials, 2))
    population.calibrate(canvas[: min(n_images, 500)][crop])

    mean_response = np.empty((n_trials, n_neurons))
    for start in progress(range(0, n_trials, chunk), "simulate", unit="chunk"):
        sl = slice(start, min(start + chunk, n_trials))
        seen = shift_images(canvas[stimulus_ids[sl]], gaze[sl])[crop]  # what the eye sees
        mean_response[sl] = population.mean_response(seen, behavior[sl], gaze=None, chunk=chunk)

    responses, log_likelihood, noise = observe(
        mean_response,
        likelihood,
        correlated_noise_rank,
        rng,
        noise_scale,
        latent_drive=pupil_z,
        latent_drive_correlation=latent_pupil_correlation,
    )
    stimuli = canvas[stimulus_ids][crop][:, None]
    recording = Recording(
        stimuli,
        responses,
        behavior=behavior,
        gaze=gaze,
        neuron_coords=coords,
        neuron_area=np.full(n_neurons, "V1"),
        stimulus_ids=stimulus_ids,
        name=f"simulated_v1_seed{seed}",
    )
    p = population
    truth = {
        "rf_position": p.rf_position,
        "orientation": p.orientation,
        "spatial_frequency": p.spatial_frequency,
        "envelope_sigma": p.envelope_sigma,
        "phase": p.phase,
        "complex_cell": p.complex_cell,
        "amplitude": p.amplitude,
        "threshold": p.threshold,
        "drive_offset": p.drive_offset,
        "drive_scale": p.drive_scale,
        "behavior_weights": p.behavior_weights,
        "shifted": p.shifted,
        "orientation_shift": p.orientation_shift,
        "pupil_state": p.pupil_state(behavior),
        "gaze": gaze,
        "mean_response": mean_response,
        **({} if log_likelihood is None else {"log_likelihood": log_likelihood}),
        **noise,
    }
    config = dict(
        n_neurons=n_neurons,
        n_images=n_images,
        repeats=repeats,
        image_size=tuple(image_size),
        seed=seed,
        likelihood=likelihood,
        correlated_noise_rank=correlated_noise_rank,
        noise_scale=noise_scale,
        latent_pupil_correlation=latent_pupil_correlation,
        pupil_shift_fraction=pupil_shift_fraction,
        pupil_shift_degrees=pupil_shift_degrees,
        complex_fraction=complex_fraction,
        rf_scatter=rf_scatter,
        gaze_std=gaze_std,
        behavior_gain=behavior_gain,
        mean_rate=mean_rate,
    )
    return Simulation(recording, truth, population, config)
