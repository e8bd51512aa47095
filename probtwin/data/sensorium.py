"""Loader for the Sensorium 2022 (static images) and 2023 (videos) file trees.

A Sensorium data set is a folder (or the ``.zip`` of one) with one ``.npy`` file per trial and
field under ``data/`` and per-trial and per-neuron metadata under ``meta/``:

======================================  =====================  ==========================
file                                    2022 (static) shape    2023 (video) shape
======================================  =====================  ==========================
``data/images/<i>.npy``                 (1, H, W)              --
``data/videos/<i>.npy``                 --                     (H, W, frames)
``data/responses/<i>.npy``              (N,)                   (N, frames)
``data/behavior/<i>.npy``               (3,)                   (2, frames)
``data/pupil_center/<i>.npy``           (2,)                   (2, frames)
``meta/trials/tiers.npy``               (trials,)              (trials,)
``meta/trials/frame_image_id.npy``      (trials,)              optional
``meta/neurons/cell_motor_coordinates``  (N, 3)                 (N, 3)
``meta/neurons/area.npy``               (N,)                   (N,)
``meta/neurons/unit_ids.npy``           (N,)                   (N,)
======================================  =====================  ==========================

Trials are read lazily (a :class:`~probtwin.data.arrays.TrialStack` per field), so a whole
multi-mouse data set need not fit in memory.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probtwin.data.arrays import TrialStack
from probtwin.data.recording import Recording
from probtwin.errors import DataError

__all__ = ["load_sensorium", "SENSORIUM_TIERS"]

#: How the tier labels of the Sensorium releases map to probtwin's tiers.
SENSORIUM_TIERS = {
    "train": "train",
    "validation": "validation",
    "oracle": "validation",
    "test": "test",
    "final_test": "test",
    "live_test": "test",
    "live_test_main": "test",
    "live_test_bonus": "test",
    "final_test_main": "test",
    "final_test_bonus": "test",
}

_STIMULUS_ID_FILES = (
    "frame_image_id.npy",
    "image_id.npy",
    "colorframeprojector_image_id.npy",
    "video_ids.npy",
    "stimulus_ids.npy",
)
_CHECKED_TRIALS = 5  # trials of each tier read to tell withheld (all-zero) responses
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _system_entry(name: str) -> bool:
    """Entries an archiver adds beside the data: macOS resource forks (``__MACOSX/``, ``._*``)."""
    parts = name.split("/")
    return "__MACOSX" in parts or any(p.startswith("._") for p in parts)


def _one_root(roots: list[str], path: Path) -> None:
    if len(roots) > 1:
        raise DataError("path", "one Sensorium data set (one folder with data/ and meta/)", f"{roots} in {path}")


class _Tree:
    """Uniform access to the files of a folder or of a zip archive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            self.archive = None
            if (path / "data").is_dir() and (path / "meta").is_dir():
                roots = [path]
            else:
                subfolders = sorted(p for p in path.iterdir() if p.is_dir() and not _system_entry(p.name + "/"))
                roots = [p for p in subfolders if (p / "data").is_dir() and (p / "meta").is_dir()]
            if not roots:
                raise DataError("path", "a Sensorium folder with data/ and meta/", f"neither in {path}")
            _one_root([p.name for p in roots], path)
            self.root = roots[0]
            self.names = None
        elif path.suffix == ".zip" and path.is_file():
            self.archive = path
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/") and not _system_entry(n)]
            prefixes = sorted({m.group(1) for n in names if (m := re.match(r"(.*?)data/", n))})
            if not prefixes:
                raise DataError("path", "a Sensorium .zip with data/ and meta/", f"no data/ in {path}")
            _one_root([p or "(the top level)" for p in prefixes], path)
            self.root = prefixes[0]
            self.names = set(names)
        else:
            raise DataError("path", "a Sensorium folder or .zip file", f"{path} (missing or of another kind)")

    def trial_files(self, field: str) -> list[str] | None:
        pattern = re.compile(r"(\d+)\.npy$")
        if self.archive is None:
            folder = self.root / "data" / field
            if not folder.is_dir():
                return None
            files = {int(m.group(1)): str(p) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))}
        else:
            prefix = f"{self.root}data/{field}/"
            files = {
                int(m.group(1)): n
                for n in self.names
                if n.startswith(prefix) and (m := pattern.fullmatch(n[len(prefix) :]))
            }
            if not files:
                return None
        numbers = sorted(files)
        if numbers != list(range(len(numbers))):
            missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))[:5]
            raise DataError(f"data/{field}", "trial files 0.npy .. n-1.npy", f"missing {missing} in {self.path}")
        return [files[i] for i in numbers]

    def meta(self, *parts: str) -> np.ndarray | None:
        if self.archive is None:
            file = self.root.joinpath("meta", *parts)
            return np.load(file, allow_pickle=False) if file.is_file() else None
        name = f"{self.root}meta/{'/'.join(parts)}"
        if name not in self.names:
            return None
        with zipfile.ZipFile(self.archive) as zf:
            return np.load(io.BytesIO(zf.read(name)), allow_pickle=False)

    def header_shapes(self, files: list[str]) -> list[tuple[int, ...]]:
        """Shapes of .npy files from their headers, without reading the data."""
        shapes = []
        zf = zipfile.ZipFile(self.archive) if self.archive is not None else None
        try:
            for name in files:
                with zf.open(name) if zf is not None else open(name, "rb") as fh:
                    version = np.lib.format.read_magic(fh)
                    read = _HEADER_READERS.get(version, np.lib.format.read_array_header_2_0)
                    shape, _, _ = read(fh)
                shapes.append(tuple(shape))
        finally:
            if zf is not None:
                zf.close()
        return shapes

    def read_bytes(self, name: str) -> bytes:
        if self.archive is None:
            return Path(name).read_bytes()
        with zipfile.ZipFile(self.archive) as zf:
            return zf.read(name)

    def stack(self, files: list[str], field: str, transform=None, **padding) -> TrialStack:
        return TrialStack(files, field, transform=transform, archive=self.archive, **padding)


def load_sensorium(
    path: str | Path,
    *,
    frames: int | None = None,
    tiers: Sequence[str] | None = None,
    name: str | None = None,
) -> Recording:
    """Read a Sensorium 2022 static or Sensorium 2023 video data set.

    Parameters
    ----------
    path : str or Path
        The data set's folder (holding ``data/`` and ``meta/``, or one sub-folder that does) or
        its ``.zip``; ``__MACOSX/`` and ``._*`` entries are ignored, and several data sets in one
        folder or archive are a DataError naming them. Stimulus ids come from
        ``meta/trials/`` ``frame_image_id``, ``image_id``, ``colorframeprojector_image_id``,
        ``video_ids`` or ``stimulus_ids`` (the first present), else, for videos, from the
        videos' contents (equal files, equal ids).
    frames : int, optional
        Videos only: keep at most the first ``frames`` frames of every trial. Trials of unequal
        length (Sensorium 2023) are padded with NaN to the longest (or to ``frames``); files
        already padded with NaN frames keep them. A trial ends where its responses' padding
        begins; its videos, behaviour and pupil centre are cut there with them
        (:mod:`probtwin.data.padding`).
    tiers : sequence of str, optional
        Source tier labels to keep (e.g. ``("train", "oracle")`` to leave out test trials whose
        responses a release withholds; ``"none"`` for the trials of no tier, kept as train).
        Default: all trials except those labelled ``"none"``. A tier whose responses are all
        zero (withheld; judged on its first five trials) raises a warning naming it.
    name : str, optional
        Session name; default, the folder or archive name.

    Returns
    -------
    Recording
        Images (trials, 1, H, W) with responses (trials, neurons), or videos
        (trials, 1, frames, H, W) with responses (trials, frames, neurons). Behaviour and pupil
        centre (as gaze) follow the same layout. Tiers are mapped by :data:`SENSORIUM_TIERS`.

    Examples
    --------
    >>> rec = pt.load_sensorium("static21067-10-18-GrayImageNet.zip")  # doctest: +SKIP
    """
    path = Path(path)
    tree = _Tree(path)
    video = tree.trial_files("videos")
    images = tree.trial_files("images")
    if video is None and images is None:
        raise DataError("path", "data/images or data/videos trial files", f"neither in {path}")
    responses = tree.trial_files("responses")
    if responses is None:
        raise DataError("path", "data/responses trial files", f"none in {path}")
    stim_files = video if video is not None else images
    n_trials = len(stim_files)

    if video is not None:
        lengths = np.array([s[-1] for s in tree.header_shapes(video)])
        if frames is not None and (int(frames) != frames or frames < 1):
            raise DataError("frames", "a positive number of frames", repr(frames))
        keep = slice(None) if frames is None else slice(0, frames)
        longest = int(lengths.max() if frames is None else min(frames, lengths.max()))
        pad = {"frames": longest} if np.any(lengths[:, None] < longest) else {}
        stimuli = tree.stack(video, "videos", lambda a: np.moveaxis(a[..., keep], -1, 0)[None], frame_axis=1, **pad)
        per_frame = lambda a: np.ascontiguousarray(a[..., keep].T)  # noqa: E731  (features, frames) -> (frames, features)
    else:
        if frames is not None:
            raise DataError("frames", "None for static images", str(frames))
        stimuli = tree.stack(images, "images")
        per_frame = None

    padding = {} if video is None else {"frame_axis": 0, "frames": longest}
    fields = {"responses": tree.stack(responses, "responses", per_frame, **padding)}
    for field, key in (("behavior", "behavior"), ("pupil_center", "gaze")):
        files = tree.trial_files(field)
        if files is not None:
            fields[key] = tree.stack(files, field, per_frame, **padding)
    for key, stack in {"stimuli": stimuli, **fields}.items():
        if len(stack) != n_trials:
            raise DataError(f"data/{key}", f"{n_trials} trial files like the stimuli", f"{len(stack)}")

    source_tiers = tree.meta("trials", "tiers.npy")
    if source_tiers is None:
        raise DataError("meta/trials/tiers.npy", "a tier label per trial", f"no such file in {path}")
    source_tiers = source_tiers.astype(str)
    if source_tiers.shape != (n_trials,):
        raise DataError("meta/trials/tiers.npy", f"shape ({n_trials},)", f"shape {source_tiers.shape}")
    unknown = sorted(set(np.unique(source_tiers)) - set(SENSORIUM_TIERS) - {"none"})
    if unknown:
        raise DataError("meta/trials/tiers.npy", f"labels among {sorted(SENSORIUM_TIERS)} or 'none'", str(unknown))
    stimulus_ids = None
    for file in _STIMULUS_ID_FILES:
        stimulus_ids = tree.meta("trials", file)
        if stimulus_ids is not None:
            break
    if stimulus_ids is None and video is not None:  # the same movie, the same id: by content
        digests = [hashlib.sha1(tree.read_bytes(f)).hexdigest() for f in video]
        stimulus_ids = np.unique(digests, return_inverse=True)[1].reshape(-1)
    _warn_withheld(tree, responses, source_tiers)

    tier_of = {**SENSORIUM_TIERS, "none": "train"}  # 'none' trials only when asked for, as train
    rec = Recording(
        stimuli,
        fields["responses"],
        behavior=fields.get("behavior"),
        gaze=fields.get("gaze"),
        neuron_coords=tree.meta("neurons", "cell_motor_coordinates.npy"),
        neuron_area=tree.meta("neurons", "area.npy"),
        neuron_ids=tree.meta("neurons", "unit_ids.npy"),
        tiers=np.array([tier_of[t] for t in source_tiers]),
        stimulus_ids=stimulus_ids,
        trial_info={"sensorium_tier": source_tiers},
        name=name or path.name.removesuffix(".zip"),
    )
    if tiers is not None:
        absent = sorted(set(tiers) - set(np.unique(source_tiers)))
        if absent:
            raise DataError("tiers", f"labels among {sorted(np.unique(source_tiers))}", str(absent))
        return rec.subset(np.isin(source_tiers, list(tiers)))
    if np.any(source_tiers == "none"):  # trials of no tier (Sensorium 2023) only when asked for
        return rec.subset(source_tiers != "none")
    return rec


def _warn_withheld(tree: _Tree, responses: list[str], source_tiers: np.ndarray) -> None:
    """Warn, naming the tier, where a tier's responses are all zero (a release's withheld test
    responses), judged on its first few trials."""
    for tier in np.unique(source_tiers):
        first = np.flatnonzero(source_tiers == tier)[:_CHECKED_TRIALS]
        arrays = [np.load(io.BytesIO(tree.read_bytes(responses[i])), allow_pickle=False) for i in first]
        if all(not np.any(a) for a in arrays):
            warnings.warn(
                f"probtwin: the responses of tier {tier!r} are all zero (its first {len(first)} trials): a "
                "release's withheld responses; leave the tier out (tiers=...) or do not score on it",
                stacklevel=3,
            )
