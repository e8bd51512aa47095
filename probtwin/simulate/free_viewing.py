"""A ground-truth higher visual cortex under free viewing: scenes larger than the visual field,
gaze traces of fixations and saccades, and populations in several areas whose receptive fields
follow area-specific laws.

Trial t shows a scene S_t (1/f noise) for ``n_frames`` frames while the eye (gaze g_tf, scene
pixels) fixates for 200-400 ms at a time and jumps between fixations. Neuron i of area a:

    offset          o_i ~ Normal(mu_a, sd_a^2 I)              eye-centred, pixels from the fovea
    pooling size    log r_i ~ Normal(alpha_a + beta_a |o_i|, s_a^2)      size-eccentricity law
    reference frame reads the scene at g_tf + o_i (eye-centred), or, for a fraction of
                    neurons, at a fixed c + o_i (scene-centred; c the scene's centre)
    remapping       the read position moves by rho_i R(u_tf) v_tf around a saccade:
                    R(u) = exp(-(u + 1)^2 / 2), u the signed frames from the nearest saccade
                    onset (:func:`probtwin.data.saccades.saccade_covariates`), v_tf its vector
    drive           D_itf = (G_{r_i} * E_{theta_i})(position): the scene's oriented contrast
                    energy (quadrature Gabors, orientation theta_i) pooled by a Gaussian of sd r_i
    gain field      exp(a_i . (g_tf - c) / (size / 4))              planar, in log gain
    suppression     1 - d_i exp(-(tau_tf - 1)^2 / 2), tau_tf the frames since the last onset
    mean            lambda_itf = m_i (D_itf / Dbar_i)^2 gain field suppression
    response        y_itf ~ Poisson(lambda_itf)

``Dbar_i`` is the neuron's mean drive over the recording, so that ``m_i`` is near its mean
response. The truth holds every parameter, the covariates, ``mean_response`` (trials, frames,
neurons) and each trial's log-likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from probtwin.data.recording import Recording
from probtwin.data.saccades import saccade_covariates
from probtwin.errors import DataError
from probtwin.simulate.images import pink_noise_images
from probtwin.simulate.noise import observe
from probtwin.simulate.v1 import Simulation

__all__ = ["AREA_LAWS", "FreeViewingPopulation", "free_viewing", "gaze_trace"]

#: Per area: offset mean (x, y) and sd (pixels), size law alpha (log pixels), beta (per pixel of
#: eccentricity), scatter s: V1 small and near the fovea, V4 and IT larger with steeper slopes.
AREA_LAWS = {
    "V1": {"offset_mean": (1.5, 1.0), "offset_sd": 1.5, "alpha": np.log(0.9), "beta": 0.05, "scatter": 0.1},
    "V4": {"offset_mean": (3.0, -2.0), "offset_sd": 3.0, "alpha": np.log(1.5), "beta": 0.08, "scatter": 0.1},
    "IT": {"offset_mean": (0.0, 0.0), "offset_sd": 4.0, "alpha": np.log(2.2), "beta": 0.11, "scatter": 0.1},
}
_ORIENTATIONS = 8
_GABOR = {"sigma": 1.5, "frequency": 0.18}


def _energy(scenes: np.ndarray) -> np.ndarray:
    """Oriented contrast energy (scenes, orientations, H, W): quadrature Gabors at 8 orientations
    (circular convolution)."""
    h, w = scenes.shape[-2:]
    y, x = np.meshgrid(np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w, indexing="ij")  # centred at (0, 0)
    envelope = np.exp(-(x**2 + y**2) / (2 * _GABOR["sigma"] ** 2))
    theta = np.arange(_ORIENTATIONS) * np.pi / _ORIENTATIONS
    along = x[None] * np.cos(theta)[:, None, None] + y[None] * np.sin(theta)[:, None, None]
    carrier = np.exp(2j * np.pi * _GABOR["frequency"] * along)
    even, odd = envelope * carrier.real, envelope * carrier.imag
    even -= even.mean(axis=(1, 2), keepdims=True)
    spectrum = np.fft.fft2(scenes)[:, None]
    out = np.abs(np.fft.ifft2(spectrum * np.fft.fft2(even)[None])) ** 2
    out += np.abs(np.fft.ifft2(spectrum * np.fft.fft2(odd)[None])) ** 2
    return out.astype(np.float32)


def _bilinear(maps: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``maps`` (S, N, H, W) at positions ``xy`` (S, F, N, 2) (x, y pixels; zero outside): (S, F, N)."""
    s, n, h, w = maps.shape
    x, y = xy[..., 0], xy[..., 1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    si = np.arange(s)[:, None, None]
    ni = np.arange(n)[None, None, :]
    out = np.zeros(x.shape)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - np.abs(x - xi)) * (1 - np.abs(y - yi))
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            value = maps[si, ni, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
            out += np.where(inside, weight * value, 0.0)
    return out


@dataclass
class FreeViewingPopulation:
    """The simulated neurons' parameters (see the module docstring); arrays over neurons."""

    area: np.ndarray
    offset: np.ndarray  # (N, 2) pixels
    size: np.ndarray  # r_i, pixels
    orientation: np.ndarray  # index into the 8 orientations
    scene_centred: np.ndarray  # bool
    remap: np.ndarray  # rho_i
    gain_field: np.ndarray  # (N, 2)
    suppression: np.ndarray  # d_i
    amplitude: np.ndarray  # m_i
    scene_size: tuple[int, int]
    saccade_threshold: float
    drive_mean: np.ndarray = field(default_factory=lambda: np.ones(1))

    @property
    def centre(self) -> np.ndarray:
        h, w = self.scene_size
        return np.array([(w - 1) / 2, (h - 1) / 2])

    def read_positions(self, gaze: np.ndarray, covariates: dict) -> np.ndarray:
        """Where each neuron reads the scene, (trials, frames, neurons, 2) pixels."""
        remap = np.exp(-((covariates["lag"] + 1) ** 2) / 2)  # (T, F); exp(-inf) = 0 without a saccade
        shift = self.remap[None, None, :, None] * (remap[..., None] * covariates["vector"])[:, :, None, :]
        eye = gaze[:, :, None, :] + self.offset[None, None] + shift
        scene = np.broadcast_to(self.centre + self.offset, eye.shape)
        return np.where(self.scene_centred[None, None, :, None], scene, eye)

    def drive(self, scenes: np.ndarray, gaze: np.ndarray, covariates: dict, chunk: int = 16) -> np.ndarray:
        """Pooled oriented energy D (trials, frames, neurons), unnormalised; ``covariates`` those
        of ``gaze`` (:func:`~probtwin.data.saccades.saccade_covariates`)."""
        positions = self.read_positions(gaze, covariates)
        h, w = self.scene_size
        fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
        pooling = np.exp(-2 * np.pi**2 * self.size[:, None, None] ** 2 * (fx**2 + fy**2))  # (N, H, W)
        out = np.empty(positions.shape[:3])
        for start in range(0, len(scenes), chunk):
            sl = slice(start, start + chunk)
            energy = np.fft.fft2(_energy(scenes[sl]))[:, self.orientation]  # (S, N, H, W)
            pooled = np.fft.ifft2(energy * pooling[None]).real
            out[sl] = _bilinear(pooled, positions[sl])
        return np.maximum(out, 0.0)

    def mean_response(
        self, scenes: np.ndarray, behavior: np.ndarray | None = None, gaze: np.ndarray | None = None
    ) -> np.ndarray:
        """True mean responses (trials, frames, neurons) to scenes (trials, H, W) or (trials, 1,
        H, W) viewed along ``gaze`` (trials, frames, 2) pixels; ``behavior`` is not used."""
        if gaze is None:
            raise DataError("gaze", "the gaze trace over each scene (trials, frames, 2)", "None")
        scenes = np.asarray(scenes, dtype=np.float64)
        scenes = scenes[:, 0] if scenes.ndim == 4 else scenes
        gaze = np.asarray(gaze, dtype=np.float64)
        covariates = saccade_covariates(gaze, self.saccade_threshold)
        return self.modulate(self.drive(scenes, gaze, covariates), gaze, covariates)

    def modulate(self, drive: np.ndarray, gaze: np.ndarray, covariates: dict) -> np.ndarray:
        """The mean response (trials, frames, neurons) given the unnormalised ``drive``: its
        normalised square times the gain field and the peri-saccadic suppression."""
        h, w = self.scene_size
        field = (gaze - self.centre) / (min(h, w) / 4)  # (T, F, 2)
        gain = np.exp(np.einsum("tfd,nd->tfn", field, self.gain_field))
        bump = np.exp(-((covariates["since_onset"] - 1) ** 2) / 2)  # (T, F)
        suppression = 1 - self.suppression[None, None] * bump[..., None]
        return self.amplitude * (drive / self.drive_mean) ** 2 * gain * suppression


def gaze_trace(
    n: int,
    frames: int,
    scene_size: tuple[int, int],
    rng: np.random.Generator,
    margin: float,
    fixation_frames: tuple[int, int] = (8, 16),
    amplitude: tuple[float, float] = (4.0, 12.0),
    jitter: float = 0.2,
) -> np.ndarray:
    """Fixations of ``fixation_frames`` frames (uniform) joined by one-frame saccades of
    ``amplitude`` pixels in a random direction, inside ``margin`` pixels of the scene's edges,
    with fixational jitter (sd ``jitter`` pixels per frame): (n, frames, 2) as (x, y)."""
    h, w = scene_size
    lo, hi = np.array([margin, margin]), np.array([w - 1 - margin, h - 1 - margin])
    if np.any(hi <= lo):
        raise DataError("scene_size", f"scenes wider than twice the margin ({margin} px)", repr(scene_size))
    durations = rng.integers(fixation_frames[0], fixation_frames[1] + 1, (n, frames // fixation_frames[0] + 1))
    ends = np.cumsum(durations, axis=1)
    count = durations.shape[1]
    points = np.empty((n, count, 2))
    points[:, 0] = rng.uniform(lo, hi, (n, 2))
    for k in range(1, count):  # each next fixation: the first of 32 candidate saccades that stays inside
        size = rng.uniform(*amplitude, (n, 32))
        angle = rng.uniform(0, 2 * np.pi, (n, 32))
        cand = points[:, k - 1, None] + size[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1)
        ok = np.all((cand >= lo) & (cand <= hi), axis=-1)
        first = np.where(ok.any(1), ok.argmax(1), 0)
        chosen = cand[np.arange(n), first]
        toward = points[:, k - 1] + np.clip((lo + hi) / 2 - points[:, k - 1], -amplitude[0], amplitude[0])
        points[:, k] = np.where(ok.any(1)[:, None], chosen, toward)
    which = (np.arange(frames)[None, :, None] >= ends[:, None, :]).sum(-1)  # (n, frames): each frame's fixation
    return np.take_along_axis(points, which[..., None].repeat(2, -1), 1) + rng.normal(0, jitter, (n, frames, 2))


def free_viewing(
    n_neurons: int = 300,
    n_scenes: int = 200,
    n_frames: int = 80,
    scene_size: tuple[int, int] = (64, 64),
    seed: int = 0,
    *,
    areas: tuple[str, ...] = ("V1", "V4", "IT"),
    scene_centred_fraction: float = 0.2,
    remapping_fraction: float = 0.5,
    mean_rate: float = 0.6,
    frame_ms: float = 25.0,
    saccade_threshold: float = 2.0,
) -> Simulation:
    """Simulate free viewing of scenes by a population in several visual areas.

    Parameters
    ----------
    n_neurons : int
        Neurons, split evenly over ``areas``.
    n_scenes : int
        Trials: each a new scene viewed for ``n_frames`` frames.
    n_frames : int
        Frames of ``frame_ms`` each (80 frames of 25 ms: at least 5 fixations of 200-400 ms).
    scene_size : (int, int)
        Height and width of the scenes (pixels).
    seed : int
    areas : tuple of str
        Areas among :data:`AREA_LAWS`.
    scene_centred_fraction : float
        Neurons that read a fixed place in the scene rather than one that moves with the eye.
    remapping_fraction : float
        Eye-centred neurons whose receptive field moves along the saccade around its onset
        (rho_i uniform in [0.3, 0.8]; the others 0).
    mean_rate : float
        Typical mean spike count per frame.
    frame_ms : float
        Frame duration (milliseconds): fixations last 200-400 ms.
    saccade_threshold : float
        Pixels per frame that count as a saccade (the jitter of fixation is 0.2).

    Returns
    -------
    Simulation
        ``recording``: scenes (trials, 1, H, W), responses (trials, frames, neurons), gaze
        (trials, frames, 2) in scene pixels, ``neuron_area``. ``truth``: ``area``, ``offset``
        (neurons, 2), ``size``, ``eccentricity``, ``orientation`` (radians),
        ``scene_centred``, ``remap``, ``gain_field`` (neurons, 2), ``suppression``,
        ``amplitude``, the laws per area ``area_names``, ``area_alpha``, ``area_beta``,
        ``area_offset_mean``, ``area_offset_sd``, the covariates ``since_onset``, ``lag``,
        ``saccade_vector``, ``read_position`` (trials, frames, neurons, 2), ``mean_response``
        (trials, frames, neurons), ``log_likelihood`` (trials,).
        ``sim.respond(scenes, gaze=gaze)`` gives the true mean response to any viewing.

    Examples
    --------
    >>> sim = free_viewing(n_neurons=6, n_scenes=4, n_frames=40, seed=1)
    >>> sim.recording.responses.shape, sim.recording.gaze.shape
    ((4, 40, 6), (4, 40, 2))
    """
    unknown = [a for a in areas if a not in AREA_LAWS]
    if unknown or not areas:
        raise DataError("areas", f"areas among {list(AREA_LAWS)}", repr(areas))
    for name, value in (("n_neurons", n_neurons), ("n_scenes", n_scenes)):
        if int(value) != value or value < 1:
            raise DataError(name, "a positive integer", repr(value))
    if int(n_frames) != n_frames or n_frames < 20:
        raise DataError("n_frames", "an integer of at least 20 (several fixations)", repr(n_frames))
    for name, value in (("scene_centred_fraction", scene_centred_fraction), ("remapping_fraction", remapping_fraction)):
        if not 0 <= value <= 1:
            raise DataError(name, "a fraction in [0, 1]", repr(value))
    h, w = scene_size
    if min(h, w) < 32:
        raise DataError("scene_size", "at least 32 x 32 pixels", repr(scene_size))
    rng = np.random.default_rng(seed)
    fixation_frames = (int(round(200 / frame_ms)), int(round(400 / frame_ms)))

    area = np.array(areas)[np.arange(n_neurons) % len(areas)]
    laws = [AREA_LAWS[a] for a in area]
    offset = (
        np.array([law["offset_mean"] for law in laws])
        + rng.standard_normal((n_neurons, 2)) * np.array([law["offset_sd"] for law in laws])[:, None]
    )
    eccentricity = np.linalg.norm(offset, axis=1)
    alpha, beta, scatter = (np.array([law[k] for law in laws]) for k in ("alpha", "beta", "scatter"))
    size = np.exp(alpha + beta * eccentricity + scatter * rng.standard_normal(n_neurons))
    scene_centred = rng.uniform(size=n_neurons) < scene_centred_fraction
    remaps = (rng.uniform(size=n_neurons) < remapping_fraction) & ~scene_centred
    population = FreeViewingPopulation(
        area=area,
        offset=offset,
        size=size,
        orientation=rng.integers(0, _ORIENTATIONS, n_neurons),
        scene_centred=scene_centred,
        remap=np.where(remaps, rng.uniform(0.3, 0.8, n_neurons), 0.0),
        gain_field=rng.normal(0, 0.3, (n_neurons, 2)),
        suppression=rng.uniform(0.2, 0.7, n_neurons),
        amplitude=mean_rate * rng.lognormal(0.0, 0.3, n_neurons),
        scene_size=(h, w),
        saccade_threshold=saccade_threshold,
    )
    scenes = pink_noise_images(n_scenes, (h, w), rng)
    margin = min(h, w) / 4
    gaze = gaze_trace(n_scenes, n_frames, (h, w), rng, margin, fixation_frames)
    covariates = saccade_covariates(gaze, saccade_threshold)
    drive = population.drive(scenes, gaze, covariates)
    population.drive_mean = drive.mean(axis=(0, 1))
    mean_response = population.modulate(drive, gaze, covariates)
    flat, log_likelihood, _ = observe(mean_response.reshape(-1, n_neurons), "poisson", 0, rng)
    recording = Recording(
        scenes[:, None],
        flat.reshape(n_scenes, n_frames, n_neurons),
        gaze=gaze,
        neuron_area=area,
        name=f"simulated_free_viewing_seed{seed}",
    )
    names = np.array(areas)
    truth = {
        "area": area,
        "offset": offset,
        "size": size,
        "eccentricity": eccentricity,
        "orientation": population.orientation * np.pi / _ORIENTATIONS,
        "scene_centred": scene_centred,
        "remap": population.remap,
        "gain_field": population.gain_field,
        "suppression": population.suppression,
        "amplitude": population.amplitude,
        "area_names": names,
        "area_alpha": np.array([AREA_LAWS[a]["alpha"] for a in names]),
        "area_beta": np.array([AREA_LAWS[a]["beta"] for a in names]),
        "area_offset_mean": np.array([AREA_LAWS[a]["offset_mean"] for a in names], dtype=float),
        "area_offset_sd": np.array([AREA_LAWS[a]["offset_sd"] for a in names]),
        "since_onset": covariates["since_onset"],
        "lag": covariates["lag"],
        "saccade_vector": covariates["vector"],
        "read_position": population.read_positions(gaze, covariates),
        "gaze": gaze,
        "mean_response": mean_response,
        "log_likelihood": log_likelihood.reshape(n_scenes, n_frames).sum(1),
    }
    config = dict(
        n_neurons=n_neurons,
        n_scenes=n_scenes,
        n_frames=n_frames,
        scene_size=(h, w),
        seed=seed,
        areas=tuple(areas),
        scene_centred_fraction=scene_centred_fraction,
        remapping_fraction=remapping_fraction,
        mean_rate=mean_rate,
        frame_ms=frame_ms,
        saccade_threshold=saccade_threshold,
    )
    return Simulation(recording, truth, population, config)
