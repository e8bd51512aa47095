"""The Recording: one container for every twin's data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from probtwin.data.arrays import TrialArray, TrialStack, as_trial_index
from probtwin.data.padding import check_padded, frame_counts
from probtwin.data.splits import split_by_stimulus
from probtwin.data.validation import TIERS, check_array, check_finite, check_labels, describe
from probtwin.errors import DataError

__all__ = ["Recording"]

_TRIAL_FIELDS = ("stimuli", "responses", "behavior", "gaze")


def _lazy(x: Any) -> bool:
    """Whether an array-like is a stack of files read on demand (checked as it is read)."""
    while isinstance(x, TrialArray):
        x = x.source
    return isinstance(x, TrialStack)


class Recording:
    """Stimuli, responses, behaviour and gaze of one session, with neuron metadata and tiers.

    Parameters
    ----------
    stimuli : array-like or None
        Images, shape (trials, channels, height, width); videos, shape
        (trials, channels, frames, height, width); or task variables of a time series, shape
        (trials, frames, features), such as a one-hot reach target. ``None`` only for a time
        series without inputs.
    responses : array-like
        Shape (trials, neurons), or (trials, frames, neurons) for per-frame responses.
        Negative values are legal (dF/F); twins with count likelihoods refuse them. Per-frame
        trials of unequal length are padded with NaN to the longest: a trial ends at the first
        frame from which its responses are NaN for every neuron (:mod:`probtwin.data.padding`);
        the stimuli, behaviour and gaze must be finite before it and may hold anything
        (NaN too) after it. Other NaN is an error.
    behavior : array-like, optional
        Per trial, shape (trials, features), or per frame, shape (trials, frames, features)
        (e.g. pupil dilation, its change, running speed; or hand velocity).
    gaze : array-like, optional
        Eye position, per trial (trials, 2) or per frame (trials, frames, 2).
    neuron_coords : array-like, optional
        Cortical coordinates, shape (neurons, 2) or (neurons, 3).
    neuron_area : array-like of str, optional
        Area label of each neuron, shape (neurons,).
    neuron_ids : array-like, optional
        Unique id of each neuron, shape (neurons,); defaults to ``0 .. neurons - 1``.
    tiers : array-like of str, optional
        ``"train"``, ``"validation"`` or ``"test"`` per trial, shape (trials,). When not given,
        a deterministic split by stimulus (:func:`~probtwin.data.splits.split_by_stimulus`).
    stimulus_ids : array-like, optional
        Id of the stimulus shown on each trial, shape (trials,): trials with the same id are
        repeats. Defaults to one stimulus per trial.
    trial_info : mapping of str to array-like, optional
        Further per-trial labels (condition, reach target, ...) or quantities (event times,
        reaction times; floats, NaN where a trial has none), each shape (trials,).
    name : str
        Session name.

    Notes
    -----
    Arrays are kept as given: a ``numpy.memmap`` or a lazily read :class:`TrialStack` stays on
    disk. Per-trial fields are exposed as :class:`TrialArray` views; ``numpy.asarray`` reads them.
    Every malformed input raises :class:`~probtwin.DataError`; nothing is filled, dropped or
    clipped.

    Examples
    --------
    >>> import numpy as np, probtwin as pt
    >>> rec = pt.Recording(np.zeros((20, 1, 8, 8)), np.ones((20, 3)), name="demo")
    >>> rec.n_trials, rec.n_neurons, rec.stimulus_kind
    (20, 3, 'images')
    >>> rec.split("train").n_trials
    16
    """

    def __init__(
        self,
        stimuli: Any,
        responses: Any,
        *,
        behavior: Any = None,
        gaze: Any = None,
        neuron_coords: Any = None,
        neuron_area: Any = None,
        neuron_ids: Any = None,
        tiers: Any = None,
        stimulus_ids: Any = None,
        trial_info: Mapping[str, Any] | None = None,
        name: str = "session",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise DataError("name", "a non-empty string", repr(name))
        responses = check_array(responses, "responses", (2, 3))
        n_trials, n_neurons = responses.shape[0], responses.shape[-1]
        if n_trials == 0:
            raise DataError("responses", "at least one trial", f"{describe(responses)}")
        if n_neurons == 0:
            raise DataError("responses", "at least one neuron", f"{describe(responses)}")
        per_frame = responses.ndim == 3
        n_frames = responses.shape[1] if per_frame else None
        if per_frame and n_frames == 0:
            raise DataError("responses", "at least one frame", f"{describe(responses)}")
        counts = None  # per-frame trials' lengths; a lazily read stack's are found when asked for
        if per_frame and not _lazy(responses):
            counts = frame_counts(responses, "responses")
        elif not per_frame:
            check_finite(responses, "responses")

        if stimuli is None:
            if not per_frame:
                raise DataError("stimuli", "images or videos for per-trial responses", "None")
        else:
            stimuli = check_array(stimuli, "stimuli", (3, 4, 5))
            self._check_trials(stimuli, "stimuli", n_trials)
            if stimuli.ndim == 3 and not per_frame:
                raise DataError(
                    "stimuli",
                    "images (trials, C, H, W) for per-trial responses",
                    f"3-D task variables, {describe(stimuli)}",
                )
            if per_frame and stimuli.ndim in (3, 5):
                frames = stimuli.shape[1] if stimuli.ndim == 3 else stimuli.shape[2]
                if frames != n_frames:
                    raise DataError(
                        "stimuli",
                        f"{n_frames} frames like responses",
                        f"{frames} frames, {describe(stimuli)}",
                    )
            if min(stimuli.shape[1:]) == 0:
                raise DataError("stimuli", "no empty axis", describe(stimuli))
            if counts is not None and stimuli.ndim in (3, 5):
                check_padded(stimuli, "stimuli", counts, 1 if stimuli.ndim == 3 else 2)
            else:
                check_finite(stimuli, "stimuli")

        behavior = self._per_trial_or_frame(behavior, "behavior", n_trials, n_frames, counts)
        gaze = self._per_trial_or_frame(gaze, "gaze", n_trials, n_frames, counts)
        if gaze is not None and gaze.shape[-1] != 2:
            raise DataError("gaze", "2 coordinates (x, y) in the last axis", describe(gaze))

        if neuron_ids is None:
            neuron_ids = np.arange(n_neurons)
        neuron_ids = check_labels(neuron_ids, "neuron_ids", n_neurons, "neurons")
        unique, repeats = np.unique(neuron_ids, return_counts=True)
        if len(unique) != n_neurons:
            raise DataError("neuron_ids", "unique ids", f"duplicates {unique[repeats > 1][:5].tolist()}")
        if neuron_coords is not None:
            neuron_coords = np.asarray(check_array(neuron_coords, "neuron_coords", (2,), allow_stack=False))
            if neuron_coords.shape[0] != n_neurons or neuron_coords.shape[1] not in (2, 3):
                raise DataError("neuron_coords", f"shape ({n_neurons}, 2) or ({n_neurons}, 3)", describe(neuron_coords))
            check_finite(neuron_coords, "neuron_coords")
            neuron_coords = neuron_coords.astype(np.float64)
        if neuron_area is not None:
            neuron_area = check_labels(neuron_area, "neuron_area", n_neurons, "neurons").astype(str)

        if stimulus_ids is None:
            stimulus_ids = np.arange(n_trials)
        stimulus_ids = check_labels(stimulus_ids, "stimulus_ids", n_trials, "trials")
        if tiers is None:
            tiers = split_by_stimulus(stimulus_ids)
        tiers = check_labels(tiers, "tiers", n_trials, "trials")
        if tiers.dtype.kind != "U":
            raise DataError("tiers", f"strings among {TIERS}", f"dtype {tiers.dtype}")
        unknown = sorted(set(np.unique(tiers)) - set(TIERS))
        if unknown:
            raise DataError("tiers", f"labels among {TIERS}", f"{unknown}")
        if not np.any(tiers == "train"):
            raise DataError("tiers", "at least one 'train' trial", "an empty train tier")

        info = {}
        for key, value in (trial_info or {}).items():
            if not isinstance(key, str):
                raise DataError("trial_info", "string keys", repr(key))
            value = np.asarray(value)
            if value.dtype.kind == "f" and value.ndim == 1 and len(value) == n_trials:
                info[key] = value  # per-trial quantities (event times, reaction times), NaN where absent
            else:
                info[key] = check_labels(value, f"trial_info[{key!r}]", n_trials, "trials")

        self._stimuli = stimuli
        self._responses = responses
        self._behavior = behavior
        self._gaze = gaze
        self.neuron_coords = neuron_coords
        self.neuron_area = neuron_area
        self.neuron_ids = neuron_ids
        self.tiers = tiers
        self.stimulus_ids = stimulus_ids
        self.trial_info = info
        self.name = name
        self.trial_index = np.arange(n_trials)
        self._index: np.ndarray | None = None
        self._counts = {"all": counts}  # shared with views: a lazy stack's lengths are read once

    @staticmethod
    def _check_trials(x: Any, field: str, n_trials: int) -> None:
        if x.shape[0] != n_trials:
            raise DataError(field, f"{n_trials} trials (as responses)", f"{x.shape[0]}, {describe(x)}")

    def _per_trial_or_frame(
        self, x: Any, field: str, n_trials: int, n_frames: int | None, counts: np.ndarray | None
    ) -> Any:
        if x is None:
            return None
        x = check_array(x, field, (2, 3) if n_frames is not None else (2,))
        self._check_trials(x, field, n_trials)
        if x.ndim == 3 and x.shape[1] != n_frames:
            raise DataError(field, f"{n_frames} frames like responses", describe(x))
        if x.shape[-1] == 0:
            raise DataError(field, "at least one feature", describe(x))
        if counts is not None and x.ndim == 3:
            check_padded(x, field, counts)
        else:
            check_finite(x, field)
        return x

    # ------------------------------------------------------------------ views

    def _view(self, field: str) -> TrialArray | None:
        source = getattr(self, f"_{field}")
        return None if source is None else TrialArray(source, self._index)

    @property
    def stimuli(self) -> TrialArray | None:
        """Stimuli of this recording's trials (see the class docstring for shapes)."""
        return self._view("stimuli")

    @property
    def responses(self) -> TrialArray:
        """Responses, shape (trials, neurons) or (trials, frames, neurons)."""
        return self._view("responses")

    @property
    def behavior(self) -> TrialArray | None:
        """Behaviour, shape (trials, features) or (trials, frames, features)."""
        return self._view("behavior")

    @property
    def gaze(self) -> TrialArray | None:
        """Eye position, shape (trials, 2) or (trials, frames, 2)."""
        return self._view("gaze")

    @property
    def n_trials(self) -> int:
        return len(self.tiers)

    @property
    def n_neurons(self) -> int:
        return len(self.neuron_ids)

    @property
    def n_frames(self) -> int | None:
        """Frames per trial for per-frame responses (the longest, where trials are padded to
        it), else ``None``."""
        return self._responses.shape[1] if self._responses.ndim == 3 else None

    @property
    def frame_counts(self) -> np.ndarray | None:
        """Recorded frames of each trial, shape (trials,), for per-frame responses (the frames
        before its NaN padding; all ``n_frames`` when the trials are of equal length); ``None``
        for per-trial responses. Lazily read responses are read once to find them."""
        if self._responses.ndim != 3:
            return None
        if self._counts["all"] is None:
            self._counts["all"] = frame_counts(self._responses, "responses")
        counts = self._counts["all"]
        return counts if self._index is None else counts[self._index]

    @property
    def padded(self) -> bool:
        """Whether some trial is shorter than ``n_frames`` (padded with NaN)."""
        counts = self.frame_counts
        return counts is not None and bool(np.any(counts < self.n_frames))

    @property
    def stimulus_kind(self) -> str | None:
        """``"images"``, ``"videos"``, ``"task"`` (task variables of a time series) or ``None``."""
        if self._stimuli is None:
            return None
        return {4: "images", 5: "videos", 3: "task"}[self._stimuli.ndim]

    @property
    def stimulus_shape(self) -> tuple[int, ...] | None:
        """Shape of one trial's stimulus, e.g. (channels, height, width)."""
        return None if self._stimuli is None else tuple(self._stimuli.shape[1:])

    @property
    def has_repeats(self) -> bool:
        """Whether some stimulus is shown on more than one trial."""
        return len(np.unique(self.stimulus_ids)) < self.n_trials

    def subset(self, trial_index: Any) -> Recording:
        """A view of some trials, without copying the large arrays.

        Parameters
        ----------
        trial_index : int array, slice or boolean mask over this recording's trials

        Returns
        -------
        Recording
            Its ``trial_index`` holds the positions of its trials in this recording.
        """
        idx = as_trial_index(trial_index, self.n_trials, "trial_index")
        if len(idx) == 0:
            raise DataError("trial_index", "at least one trial", "an empty selection")
        view = object.__new__(Recording)
        view.__dict__.update(self.__dict__)
        view._index = idx if self._index is None else self._index[idx]
        view.trial_index = idx
        view.tiers = self.tiers[idx]
        view.stimulus_ids = self.stimulus_ids[idx]
        view.trial_info = {k: v[idx] for k, v in self.trial_info.items()}
        return view

    def split(self, tier: str) -> Recording:
        """The trials of one tier, as a view.

        Parameters
        ----------
        tier : {"train", "validation", "test"}

        Returns
        -------
        Recording
        """
        if tier not in TIERS:
            raise DataError("tier", f"one of {TIERS}", repr(tier))
        mask = self.tiers == tier
        if not mask.any():
            raise DataError("tier", f"a tier with trials in {self.name!r}", f"no {tier!r} trials")
        return self.subset(np.flatnonzero(mask))

    def to_nwb(self, path: str | Path, **metadata: Any) -> Path:
        """Write this recording to an NWB file (:func:`probtwin.data.nwb.write_nwb`; ``subject=``,
        ``session_start_time=`` and other NWB metadata pass through); :func:`probtwin.load_nwb`
        reads it back exactly."""
        from probtwin.data.nwb import write_nwb

        return write_nwb(self, path, **metadata)

    def __len__(self) -> int:
        return self.n_trials

    def __repr__(self) -> str:
        counts = ", ".join(f"{t} {int(np.sum(self.tiers == t))}" for t in TIERS)
        frames = f" x {self.n_frames} frames" if self.n_frames is not None else ""
        if self._counts["all"] is not None and self.padded:
            frames = f" x {self.frame_counts.min()}-{self.n_frames} frames (NaN-padded)"
        lines = [
            f"Recording({self.name!r}: {self.n_trials} trials{frames} x {self.n_neurons} neurons",
            f"  stimuli    {self.stimulus_kind or 'none'} {self.stimulus_shape or ''}".rstrip(),
            f"  behavior   {self._behavior.shape[-1] if self._behavior is not None else 'none'}",
            f"  gaze       {'yes' if self._gaze is not None else 'none'}",
            f"  neurons    coords {'yes' if self.neuron_coords is not None else 'none'}, areas "
            + (", ".join(np.unique(self.neuron_area)) if self.neuron_area is not None else "none"),
            f"  tiers      {counts}",
            f"  stimulus   {len(np.unique(self.stimulus_ids))} distinct ids"
            + (" (repeats)" if self.has_repeats else "")
            + ")",
        ]
        return "\n".join(lines)
