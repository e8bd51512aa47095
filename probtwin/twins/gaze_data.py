"""The gaze twin's data: checking scenes, gaze traces and saccade onsets, turning trials into
batches (gaze in pixels, saccade covariates), and starting each neuron's receptive field where
its responses follow the stimulus's contrast energy."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from probtwin.data.batching import batch_arrays
from probtwin.data.recording import Recording
from probtwin.data.saccades import saccade_covariates
from probtwin.errors import DataError
from probtwin.nn.energy import energy_rf_start, gaze_energy_centres

__all__ = ["GazeData", "areas_of"]

#: an energy peak's strength (correlation x sqrt(pairs)) above which a field counts as found: a
#: standard normal's maximum over 81 places x 20 lags is about 3.4, and rarely above 5
_PEAK_STRENGTH = 5.0
_NO_SACCADE = 1e3  # frames: the lag of a frame with no saccade in its trial (every bump is 0 there)


def _recorded_onset(rec: Recording) -> float | None:
    """The frame of the saccade's onset of a recording without a gaze trace
    (``trial_info["saccade_onset"]``, the same for every trial), else None."""
    if rec.gaze is not None or "saccade_onset" not in rec.trial_info:
        return None
    onset = np.asarray(rec.trial_info["saccade_onset"], dtype=float)
    if not np.all(np.isfinite(onset)) or np.ptp(onset) > 0:
        found = f"{len(np.unique(onset))} distinct values, e.g. {np.unique(onset)[:3].tolist()}"
        raise DataError(f"trial_info['saccade_onset'] of {rec.name!r}", "the same finite frame for every trial", found)
    return float(onset[0])


def areas_of(rec: Recording) -> np.ndarray:
    """Each neuron's area label; one area "all" without labels; a DataError where some are missing."""
    if rec.neuron_area is None:
        return np.full(rec.n_neurons, "all")
    labels = np.asarray(rec.neuron_area).astype(str)
    missing = np.flatnonzero(np.isin(np.char.strip(np.char.lower(labels)), ["", "nan", "none"]))
    if len(missing):
        raise DataError(
            f"neuron_area of {rec.name!r}",
            "an area label for every neuron (or none at all: one area)",
            f"no label for {len(missing)} of {rec.n_neurons} neurons, e.g. neurons {missing[:5].tolist()}",
        )
    return labels


class GazeData:
    """Mixin of :class:`~probtwin.twins.gaze.GazeTwin`: its data checks, batches and starting
    receptive fields."""

    def _saccade_onset(self, k: int) -> float | None:
        """Session k's saccade onset (frame) where it has no gaze trace, else None."""
        return (self.config.get("saccade_onset") or [None] * len(self.specs))[k]

    def _check_specs(self) -> None:
        for spec in self.specs:
            if len(spec.stimulus_shape) not in (3, 4):
                expected = (
                    "scenes (trials, channels, height, width) or scenes per frame (trials, channels, frames, "
                    "height, width) with responses (trials, frames, neurons)"
                )
                raise DataError(f"stimuli of {spec.name!r}", expected, f"trials of shape {tuple(spec.stimulus_shape)}")
        g = self._gaze
        if self.recordings:
            g["fixation"] = [rec.n_frames is None for rec in self.recordings]
            g["saccade_onset"] = [_recorded_onset(rec) for rec in self.recordings]
        onset = any(o is not None for o in g["saccade_onset"] or [])
        defaults = (10, 4.0, -12.0) if onset else (4, 2.0, 0.0)
        for key, default in zip(("saccade_basis", "basis_spacing", "basis_start"), defaults, strict=True):
            g[key] = default if g[key] is None else g[key]
        for k, rec in enumerate(self.recordings):
            if g["fixation"][k]:  # one response per trial: a fixation, at the gaze given or the centre
                if rec.gaze is not None:
                    self._check_gaze(k, np.asarray(rec.gaze)[:, None], None)
                continue
            if g["saccade_onset"][k] is not None:
                if len(self.specs[k].stimulus_shape) != 4:
                    expected = "scenes per frame (trials, C, frames, H, W) with a saccade onset and no gaze trace"
                    raise DataError(f"stimuli of {rec.name!r}", expected, f"trials of shape {rec.stimulus_shape}")
                continue
            if rec.gaze is None or rec.gaze.ndim != 3:
                found = "None" if rec.gaze is None else f"shape {rec.gaze.shape}"
                expected = "the gaze trace over each scene (trials, frames, 2), or trial_info['saccade_onset']"
                raise DataError(f"gaze of {rec.name!r}", expected, found)
            self._check_gaze(k, np.asarray(rec.gaze), None)

    @torch.no_grad()
    def _init_positions(self) -> None:
        """Start each neuron where its training responses follow local contrast energy best:
        at the best eye-centred offset (coupling 0.9) or, where a fixed place in the scene does
        better, there (coupling 0.1). Scenes per frame: at the pixel whose contrast energy, at
        the best lag and scale, the responses follow best, as an offset from the centre
        (coupling 0.75), with that scale as the pooling size unless ``init_size`` is given."""
        if self._per_frame_scenes:
            return self._init_positions_per_frame()
        for k, rec in enumerate(self.recordings):
            reach = int(max(self.specs[k].stimulus_shape[-2:]) // 4)
            train = rec.split("train")
            size = max(1, 2**21 // int(np.prod(self.specs[k].stimulus_shape)))
            chunks = np.array_split(np.arange(train.n_trials), -(-train.n_trials // size))

            def batches(chunks=chunks, train=train, k=k):
                for i in chunks:
                    a = batch_arrays(train, i)
                    b = self._batch(k, a)
                    y = b["responses"]
                    yield b["stimuli"], b["gaze_px"], y[:, None] if y.dim() == 2 else y

            best = gaze_energy_centres(batches(), reach)
            scene = best["place_correlation"] > best["offset_correlation"]
            offset = torch.where(scene[:, None], best["place"], best["offset"])
            self.readouts[k].start_at(offset, torch.where(scene, 0.1, 0.9))

    @torch.no_grad()
    def _init_positions_per_frame(self) -> None:
        """Scenes per frame: each neuron starts at its peak of contrast energy or of the frames
        themselves (``linear``: a probe drives a field linearly); with a saccade onset and no
        gaze trace, at its peak before the saccade, and the saccade's vector at the median shift
        of the peaks from before to after it (:meth:`_saccade_windows`, :meth:`_saccade_start`)."""
        for k, rec in enumerate(self.recordings):
            train = rec.split("train")
            size = max(1, 2**22 // int(np.prod(self.specs[k].stimulus_shape)))
            chunks = np.array_split(np.arange(train.n_trials), -(-train.n_trials // size))
            side = min(self.specs[k].stimulus_shape[-2:])
            scales = [s for s in (1.0, 2.0, 4.0) if s <= side / 4] or [1.0]
            readout = self.readouts[k]
            before, after = self._saccade_windows(k, train.n_frames)
            frames = None if before is None else slice(0, before)
            psth = None
            if self._saccade_onset(k) is not None:  # trials locked to one onset: its time course is no field's
                # a frame missing in every trial: its mean is 0, as its filled responses
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nan_to_num(np.nanmean(np.asarray(train.responses, np.float32), 0))
                psth = torch.as_tensor(mean, device=self.device)
            place, scale, strength = energy_rf_start(
                self._energy_pairs(k, train, chunks, frames, psth),
                sigma=scales,
                lags=self.config["temporal_lags"],
                linear=True,
            )
            offset = place.to(readout.offset_loc) - torch.as_tensor(self._centre(k)).to(place.device)
            coupling = torch.full((len(offset),), 0.75, device=offset.device)
            readout.start_at(offset, coupling, scale if self.config["init_size"] is None else None)
            if after is not None:
                self._saccade_start(k, train, chunks, after, place, strength, scale, coupling, psth)

    def _saccade_windows(self, k: int, frames: int) -> tuple[int | None, int | None]:
        """Session k's fixations before and after its saccade, clear of the remapping's starting
        time course (``m -/+ 2 w`` frames from onset): the first frame after the first, the
        first frame of the second; (None, None) without a saccade onset, or where either holds
        fewer frames than the temporal kernel's lags."""
        readout, onset = self.readouts[k], self._saccade_onset(k)
        if onset is None:
            return None, None
        m, w = float(readout.remap_lag), float(readout.remap_width)
        before, after = int(np.floor(onset + m - 2 * w)), int(np.ceil(onset + m + 2 * w))
        lags = self.config["temporal_lags"]
        return (before, after) if before > lags and frames - after > lags else (None, None)

    def _energy_pairs(self, k: int, train, chunks, frames: slice | None, psth: torch.Tensor | None = None):
        """(stimuli, responses) of the training trials in chunks, of ``frames`` only if given; the
        responses less ``psth`` (frames, neurons), if given: the mean over trials of each frame,
        so that what every trial does at the same frame (the saccade's time course, with a probe
        schedule locked to it) does not place a field."""
        for i in chunks:
            b = self._batch(k, batch_arrays(train, i))
            x, y = b["stimuli"], torch.nan_to_num(b["responses"])
            y = y if psth is None else y - psth
            yield (x, y) if frames is None else (x[:, :, frames], y[:, frames])

    def _saccade_start(self, k, train, chunks, start, before, strength_before, scale, coupling, psth=None) -> None:
        """Start the saccade's vector ``v`` where the fields moved: the median, over the neurons
        whose energy peaks stand out both before and after the saccade (frames from ``start``;
        strength above ``_PEAK_STRENGTH``), of the shift of the peak from before to after, divided by the
        starting coupling (a field moves by ``lambda_i v`` at the saccade). No such neuron: 0."""
        readout = self.readouts[k]
        after, _, strength_after = energy_rf_start(
            self._energy_pairs(k, train, chunks, slice(start, None), psth),
            sigma=scale,
            lags=self.config["temporal_lags"],
            linear=True,
        )
        clear = (strength_before > _PEAK_STRENGTH) & (strength_after > _PEAK_STRENGTH)
        if clear.any():
            shift = (after - before)[clear].median(0).values / coupling[clear].median()
            readout.saccade_loc.copy_(shift.to(readout.saccade_loc) / readout.pixels)

    def _batch(self, k: int, arrays: dict, index=None, n_total=None) -> dict:
        arrays = dict(arrays)
        gaze = arrays.pop("gaze", None)  # used in pixels, not standardised
        fixation = self.config["fixation"][k]
        if fixation:  # one frame per trial, at the gaze given or the scene's centre
            n = len(next(v for v in arrays.values() if v is not None))
            gaze = np.tile(self._centre(k), (n, 1, 1)) if gaze is None else np.asarray(gaze)[:, None]
        if gaze is not None:
            responses = arrays.get("responses")
            self._check_gaze(k, np.asarray(gaze), None if fixation or responses is None else responses)
        batch = super()._batch(k, arrays, index, n_total)
        batch["per_frame"] = not fixation
        onset = self._saccade_onset(k)
        if gaze is None and onset is not None:  # the eye at the centre, then (at onset) at centre + v
            frames = self.specs[k].stimulus_shape[1] if self._per_frame_scenes else batch["responses"].shape[1]
            lag = torch.arange(frames, device=self.device, dtype=torch.float32) - onset
            n = len(batch["index"])
            batch["lag"] = batch["since_onset"] = lag.expand(n, frames)
            batch["after_onset"] = (lag >= 0).float().expand(n, frames)
        elif gaze is not None:
            covariates = saccade_covariates(gaze, self.config["saccade_threshold"])
            for key in ("lag", "since_onset"):
                values = np.where(np.isfinite(covariates[key]), covariates[key], _NO_SACCADE)
                batch[key] = self._tensor(values)
            batch["saccade_vector"] = self._tensor(covariates["vector"])
            batch["gaze_px"] = self._tensor(gaze)
        return batch

    def _centre(self, k: int) -> np.ndarray:
        """The scene's centre (x, y) in pixels, (2,)."""
        h, w = self.specs[k].stimulus_shape[-2:]
        return np.array([(w - 1) / 2, (h - 1) / 2], np.float32)

    def _check_gaze(self, k: int, gaze: np.ndarray, responses: np.ndarray | None) -> None:
        h, w = self.specs[k].stimulus_shape[-2:]
        if gaze.ndim != 3 or gaze.shape[-1] != 2:
            raise DataError("gaze", "gaze per frame (trials, frames, 2) in scene pixels", f"shape {gaze.shape}")
        if responses is not None and responses.shape[1] != gaze.shape[1]:
            raise DataError("gaze", f"{responses.shape[1]} frames like the responses", f"{gaze.shape[1]} frames")
        outside = (gaze[..., 0] < 0) | (gaze[..., 0] > w - 1) | (gaze[..., 1] < 0) | (gaze[..., 1] > h - 1)
        if outside.any():
            t, f = np.argwhere(outside)[0]
            raise DataError(
                "gaze",
                f"eye positions inside the scene: x in [0, {w - 1}], y in [0, {h - 1}] pixels",
                f"{int(outside.sum())} frames outside, e.g. trial {t} frame {f} at {gaze[t, f].tolist()}",
            )

    def _inputs(self, x: Recording | np.ndarray, session: Any, behavior: Any = None, gaze: Any = None):
        k, stimuli, behavior, gaze = super()._inputs(x, session, behavior, gaze)
        onset = self._saccade_onset(k)
        if gaze is None and not self.config["fixation"][k] and onset is None:
            raise DataError("gaze", "the gaze trace over each scene (trials, frames, 2), scene pixels", "None")
        return k, stimuli, behavior, gaze

    def _response_frames(self, k: int, stimuli: np.ndarray, gaze: np.ndarray | None) -> int | None:
        """Scenes per frame have their frames; one scene per trial, the frames of its gaze trace
        ((trials, frames, 2) or one (frames, 2) for all); a fixation, one response per trial."""
        if self._per_frame_scenes:
            return stimuli.shape[2]
        return None if self.config["fixation"][k] or gaze is None else gaze.shape[-2]

    def _check_stimulus_shape(self, k: int, shape: tuple[int, ...]) -> None:
        expected = tuple(self.specs[k].stimulus_shape)
        if tuple(shape) != expected:
            raise DataError(
                "stimuli", f"scenes of shape (n, {', '.join(map(str, expected))})", f"trials of shape {shape}"
            )
