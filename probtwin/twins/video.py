"""VideoTwin: the image twin's generative story over time, for responses to movies per frame.

For session s, trial t (video x_t, behaviour b_tf and gaze g_tf per frame f) and neuron i:

    position        p_i ~ Normal(m_phi(c_i), sigma_p^2 I)        shared over frames
    feature weights w_i ~ Normal(0, tau^2 I)
    bias            beta_i ~ Normal(0, 10^2)
    shift           delta_tf = h_psi(g_tf)                        per-frame shifter
    retina          x~_tf(q) = x_tf(q + delta_tf)                 each frame as the eye saw it
    core            F_f = F_theta([x~_t, b_t])[f]                 factorized 3-D core, causal in time
    gain            gain_tfi = exp(u_i . z_psi(b_tf))             per-frame modulator
    mean            lambda_tfi = f(w_i . F_f[p_i] + beta_i) gain_tfi
    response        y_tf ~ noise(lambda_tf)                       per frame: independent, a flow or
                                                                  latent counts, a latent state
                                                                  h_tf per frame

The shifter moves each frame before the core (``retinal=True``), so that a saccade within the
core's temporal window reaches it as the retina saw it: a jump of the image. Moving the readout
instead (``retinal=False``: ``F_f[p_i + delta_tf]`` on the screen's frames, as the image twin and
the Sensorium 2023 baseline do) is the same for a still eye, but hands the core's temporal filters
frames from before a saccade at their screen place rather than where the eye saw them.

Everything but the core is the image twin's (:mod:`probtwin.twins.image`): the readout, its
priors and posterior, the noise models, the whole-twin posterior and every query. Training runs
on clips: a random window of ``clip_frames`` frames of each trial in a minibatch, its first
``burn_in`` frames fed to the core but unscored where the window starts inside a trial (they
lack the history the causal core needs), the likelihood scaled by
``frames / (clip_frames - burn_in)`` so that a clip stands for its trial. A clip that is a whole
trial is scored from its first frame: the core sees the zeros of its padding before it, as when
the twin predicts whole trials. Predictions run over whole trials, in chunks of trials.

Trials of unequal length (NaN-padded, :mod:`probtwin.data.padding`) are read as they are: a
clip lies inside its trial where the trial is long enough, only a trial's own frames are scored
(a frame mask in the likelihood), each clip's likelihood scaled by its trial's frames over its
scored frames, and predictions are NaN where the trial has no frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from probtwin.data.batching import batch_arrays, clip_arrays, default_burn_in, joint_steps
from probtwin.data.padding import frame_counts
from probtwin.data.recording import Recording
from probtwin.data.registry import check_image_specs
from probtwin.errors import DataError
from probtwin.nn.gaze import lag_basis
from probtwin.nn.shifter import shift_frames
from probtwin.nn.video_core import FactorizedCore3d
from probtwin.twins.image import ImageTwin
from probtwin.twins.noise import per_frame

__all__ = ["VideoTwin"]


class VideoTwin(ImageTwin):
    """A probabilistic twin of a population's per-frame responses to movies.

    Parameters
    ----------
    recordings : Recording or list of Recording
        Videos (trials, C, frames, H, W) with responses (trials, frames, neurons); behaviour
        (trials, frames, d) and gaze (trials, frames, 2) per frame (or per trial).
    likelihood, noise
        As :class:`~probtwin.twins.image.ImageTwin`, per frame: every noise model, a latent
        state (of a flow, or of latent counts) drawn per frame.
    hidden_channels, layers, input_kernel, hidden_kernel : int
        The core's shape (:class:`~probtwin.nn.video_core.FactorizedCore3d`): channels, layers,
        spatial kernels of the first and the other layers.
    input_frames, hidden_frames : int
        Causal temporal kernels of the first and the other layers (frames).
    recurrent : bool
        A convolutional GRU over the core's features.
    retinal : bool
        With gaze and a shifter, the shift moves each frame before the core (the retinal movie;
        default) rather than the readout positions (``False``).
    readout_lags, readout_basis : int
        Each neuron weights what it reads in the last ``readout_lags`` frames with a time course
        of its own, in ``readout_basis`` bumps (:func:`probtwin.nn.gaze.lag_basis`), one weight
        vector per bump (``weights`` of ``readout_basis * channels``), on top of the core's
        shared temporal filters. 1 and 1: the frame's features alone.
    latent_ar1 : bool
        A flow's latent state persists over frames: each dimension an AR(1) process with its own
        learned frame-to-frame correlation (:mod:`probtwin.twins.state_space`); the frames of
        a clip (a trial) are scored jointly, exactly. False: a state drawn anew each frame.
    clip_frames : int, optional
        Frames of each training clip (default: 60, or the trials' frames when shorter).
    burn_in : int, optional
        Unscored first frames of a clip. Default: none when every clip is a whole trial (its
        first frames see what came before the trial as the core's padding, as they do when the
        twin predicts whole trials); else the frames of the past each response sees
        (:attr:`past_frames`), at most half the clip, since a clip cut from inside a trial
        lacks their history.
    **settings
        The other settings of :class:`~probtwin.twins.image.ImageTwin` (``latent_rank``, readout,
        priors, shifter, modulator, posterior, seed, ...).

    Examples
    --------
    >>> sim = pt.simulate.video(n_neurons=20, n_trials=40, seed=0)  # doctest: +SKIP
    >>> twin = pt.VideoTwin(sim.recording).fit(max_epochs=5)         # doctest: +SKIP
    """

    _frame_padding = True  # reads NaN-padded trials of unequal length

    #: ``fit``'s defaults: a step holds a few clips (each as costly as tens of images).
    fit_defaults: dict = {"max_epochs": 200, "batch_size": 8, "patience": 10}

    def __init__(
        self,
        recordings: Recording | list[Recording] | None,
        likelihood: str | None = None,
        noise: str = "independent",
        *,
        hidden_channels: int = 16,
        layers: int = 3,
        input_kernel: int = 9,
        hidden_kernel: int = 5,
        input_frames: int = 9,
        hidden_frames: int = 3,
        recurrent: bool = False,
        retinal: bool = True,
        readout_lags: int = 7,
        readout_basis: int = 4,
        latent_ar1: bool = False,
        clip_frames: int | None = None,
        burn_in: int | None = None,
        **settings: Any,
    ) -> None:
        for name, value in (
            ("input_frames", input_frames),
            ("hidden_frames", hidden_frames),
            ("readout_lags", readout_lags),
            ("readout_basis", readout_basis),
        ):
            if int(value) != value or value < 1:
                raise DataError(name, "a positive number of frames (bumps)", repr(value))
        self._video = {
            "input_frames": int(input_frames),
            "hidden_frames": int(hidden_frames),
            "recurrent": bool(recurrent),
            "retinal": bool(retinal),
            "readout_lags": int(readout_lags),
            "readout_basis": int(readout_basis),
            "latent_ar1": bool(latent_ar1),
        }
        super().__init__(
            recordings,
            likelihood,
            noise,
            hidden_channels=hidden_channels,
            layers=layers,
            input_kernel=input_kernel,
            hidden_kernel=hidden_kernel,
            **settings,
        )
        frames = min(s.stimulus_shape[1] for s in self.specs)
        clip = min(60, frames) if clip_frames is None else clip_frames
        if int(clip) != clip or not 2 <= clip <= frames:
            raise DataError("clip_frames", f"an integer in [2, {frames}] (the trials' frames)", repr(clip_frames))
        longest = max(s.stimulus_shape[1] for s in self.specs)  # clips of that length are whole trials
        burn = default_burn_in(clip, longest, self.past_frames) if burn_in is None else burn_in
        if int(burn) != burn or not 0 <= burn < clip:
            raise DataError("burn_in", f"an integer in [0, {clip}) (frames of a clip)", repr(burn_in))
        self.config.update(self._video, clip_frames=int(clip), burn_in=int(burn))

    # a twin saved before ``retinal`` existed moved its readout by gaze; before the readout's lags,
    # it read the features of the frame alone
    #: A video's ensemble is not yet measured against its targets: the readout posterior.
    default_posterior = "readout"

    _saved_before = {"retinal": False, "readout_lags": 1, "readout_basis": 1}

    def _check_specs(self) -> None:
        check_image_specs(self.specs, videos=True)

    def _noise_options(self) -> dict:
        return {"ar1": self._video["latent_ar1"]}

    def _default_core(self, in_channels: int) -> nn.Module:
        c = self.config
        return FactorizedCore3d(
            in_channels,
            c["hidden_channels"],
            c["layers"],
            c["input_kernel"],
            c["hidden_kernel"],
            self._video["input_frames"],
            self._video["hidden_frames"],
            self._video["recurrent"],
        )

    @property
    def past_frames(self) -> int:
        """Frames of the past each response sees: the core's history and the readout's lags."""
        return int(getattr(self.core, "history", 0)) + self._video["readout_lags"] - 1

    def _readouts(self, channels: int) -> nn.ModuleList:
        return super()._readouts(channels * self._video["readout_basis"])  # a weight vector per bump

    def _readout_lags(self, batch: dict) -> dict:
        """The bumps over the readout's lags and the frames per trial (none for one lag and bump)."""
        lags, basis = self._video["readout_lags"], self._video["readout_basis"]
        if lags == basis == 1:
            return {}
        return {"lags": lag_basis(lags, basis), "frames": batch["frames"]}

    # ------------------------------------------------------------------ data

    def _batch(self, k: int, arrays: dict, index=None, n_total=None) -> dict:
        batch = super()._batch(k, arrays, index, n_total)
        batch["per_frame"] = True
        return batch

    def _check_stimulus_shape(self, k: int, shape: tuple[int, ...]) -> None:
        """Movies of any length, with the session's channels, height and width."""
        expected = self.specs[k].stimulus_shape
        if len(shape) != 4 or shape[0] != expected[0] or list(shape[2:]) != list(expected[2:]):
            c, _, h, w = expected
            raise DataError(
                "stimuli", f"videos of shape (n, {c}, frames, {h}, {w}) (the twin's input)", f"trials of shape {shape}"
            )

    _energy_lags = 6  # readout positions start at each neuron's best (latency, pixel) of contrast energy

    def epoch_batches(self, epoch: int):
        """Steps of clips: each trial of a minibatch contributes a random window of
        ``clip_frames`` frames (the same seed and epoch, the same windows)."""
        clip, burn = self.config["clip_frames"], self.config["burn_in"]
        trains = self._train_tiers()
        steps = joint_steps([t.n_trials for t in trains], self._batch_size, self._seed, epoch)
        rng = np.random.default_rng([self._seed, epoch])
        for step in steps:
            batches = []
            for k, (train, idx) in enumerate(zip(trains, step, strict=True)):
                arrays = batch_arrays(train, idx)
                frames = frame_counts(arrays["responses"])  # each trial's (NaN padding left out)
                clipped = clip_arrays(arrays, clip, rng, burn)
                batch = self._batch(k, clipped, idx, train.n_trials)
                batch["burn_in"] = burn
                if "lengths" in clipped:  # each trial's clip stands for its own length
                    scale = frames / np.maximum(clipped["lengths"], 1)
                    batch["likelihood_scale"] = torch.as_tensor(scale, dtype=torch.float32, device=self.device)
                else:
                    batch["likelihood_scale"] = frames[0] / (clip - burn)
                batches.append(batch)
            yield batches

    # ------------------------------------------------------------------ the generative story

    def _features(self, batch: dict) -> torch.Tensor:
        """The core's feature maps of every frame, (trials * frames, C, H', W'), computed once per
        batch (frames after trials, as :meth:`_frames_view` flattens behaviour and gaze)."""
        key = id(next(self.core.parameters(), None))
        if batch.get("features", (None,))[0] != key:
            x = batch["stimuli"]  # (trials, C, frames, H, W)
            shifter = self._frame_shifter(batch)
            if shifter is not None:  # each frame where the eye saw it
                shift = shifter(per_frame(batch["gaze"], x.shape[2]).flatten(0, 1))
                seen = shift_frames(x.transpose(1, 2).flatten(0, 1), shift)
                x = seen.unflatten(0, (x.shape[0], -1)).transpose(1, 2)
            if self.config["behavior_in_core"]:
                b = per_frame(batch["behavior"], x.shape[2])
                x = torch.cat([x, b.transpose(1, 2)[..., None, None].expand(-1, -1, -1, *x.shape[-2:])], dim=1)
            frames = getattr(self.core, "frames", None)  # the factorized core gives frames as a batch
            features = frames(x) if frames is not None else self.core(x).transpose(1, 2).flatten(0, 1)
            batch["features"] = (key, features)
        return batch["features"][1]

    def _frame_shifter(self, batch: dict) -> nn.Module | None:
        """The session's shifter when it moves the frames (``retinal`` and gaze given)."""
        shifter = self.readouts[batch["session"]].shifter
        if not self.config["retinal"] or shifter is None or batch.get("gaze") is None:
            return None
        return shifter

    def _readout_shift(self, batch: dict) -> torch.Tensor | None:
        """None where the frames moved (the readout stays); else the image twin's shift."""
        return None if self._frame_shifter(batch) is not None else super()._readout_shift(batch)

    def _location(self, batch: dict, position, weights, bias, state_weights=None) -> torch.Tensor:
        """Locations (..., trials, frames, neurons) of the scored frames (after ``burn_in``)."""
        trials, frames = batch["stimuli"].shape[0], batch["stimuli"].shape[2]
        self._features(batch)
        view = dict(batch, frames=frames)
        for field in ("behavior", "gaze"):
            values = per_frame(batch.get(field), frames)
            view[field] = None if values is None else values.flatten(0, 1)
        loc = super()._location(view, position, weights, bias, state_weights)  # (..., trials * frames, N)
        return loc.unflatten(-2, (trials, frames))[..., batch.get("burn_in", 0) :, :]
