"""Real visual-cortex recordings: macaque V4 (Cowley et al.), macaque V1 (Tang et al.), mouse V1
(Allen Brain Observatory). Sources and citations: ``shared/data/README.md``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from probtwin.data.arrays import TrialArray
from probtwin.data.recording import Recording
from probtwin.data.splits import split_by_stimulus
from probtwin.datasets.paths import data_file
from probtwin.errors import DataError
from probtwin.infer.progress import progress

__all__ = ["cowley_v4", "tang_v1", "allen_v1", "resize_images"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def resize_images(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize images with antialiasing (PIL bilinear on float pixels; no rounding).

    Parameters
    ----------
    images : numpy.ndarray, shape (n, channels, height, width)
    size : int or (int, int)
        Output height and width (an int for square images).

    Returns
    -------
    numpy.ndarray of float32, shape (n, channels, *size)
    """
    from PIL import Image

    height, width = (size, size) if isinstance(size, (int, np.integer)) else size
    if height < 1 or width < 1:
        raise DataError("image_size", "a positive size", repr(size))
    n, c = images.shape[:2]
    out = np.empty((n, c, height, width), dtype=np.float32)
    for i in progress(range(n), "resize images", unit="image"):  # PIL: one plane at a time (loading)
        for j in range(c):
            plane = Image.fromarray(np.ascontiguousarray(images[i, j], dtype=np.float32), mode="F")
            out[i, j] = np.asarray(plane.resize((width, height), Image.Resampling.BILINEAR))
    return out


def _read_jpegs(path: Path) -> np.ndarray:
    from PIL import Image

    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".jpg"))
        if not names:
            raise DataError(str(path), "JPEG images (names ending in .jpg)", "none")
        planes = []
        for name in progress(names, "read images", unit="image"):
            with zf.open(name) as fh:
                planes.append(np.asarray(Image.open(fh).convert("RGB")))
    return np.stack(planes).transpose(0, 3, 1, 2).astype(np.float32)  # (n, 3, H, W), 0..255


def cowley_v4(
    session: str = "201025",
    root: str | Path | None = None,
    image_size: int | None = None,
    grayscale: bool = False,
    trials: str = "average",
) -> Recording:
    """Macaque V4 spike counts to natural or synthetic images (Cowley, Stan, Pillow & Smith 2023).

    Parameters
    ----------
    session : {"201025", "210224", "210325"}
    root : str or Path, optional
        Data folder; see :func:`probtwin.datasets.paths.data_root`.
    image_size : int, optional
        Resize the 112 x 112 images to ``image_size`` x ``image_size``.
    grayscale : bool
        Convert to one luminance channel (ITU-R BT.601 weights).
    trials : {"average", "raw"}
        ``"average"``: one trial per image, the mean spike count over repeats (not integers).
        ``"raw"``: one trial per repeat with integer counts and ``stimulus_ids`` (where the
        session has ``responses_raw_<session>.npy``: 210325 in ``shared/data``).

    Returns
    -------
    Recording
        Stimuli (trials, 3 or 1, H, W) float32 pixel values 0..255; responses (trials, neurons)
        spike counts in 100 ms; split by image (80/10/10, ``RandomState(0)``).
    """
    if not isinstance(session, str) or not session or "/" in session or "\\" in session:
        raise DataError("session", "a session name such as '201025'", repr(session))
    if trials not in ("average", "raw"):
        raise DataError("trials", "'average' or 'raw'", repr(trials))

    images = _read_jpegs(data_file(f"cowley_v4/images_{session}.zip", root))
    if grayscale:
        images = np.einsum("nchw,c->nhw", images, _LUMA)[:, None]
    if image_size is not None:
        images = resize_images(images, image_size)
    n_images = len(images)
    if trials == "average":
        responses = np.load(data_file(f"cowley_v4/responses_repeat_averaged_{session}.npy", root)).T
        stimuli, stimulus_ids = images, np.arange(n_images)
    else:
        raw = np.load(data_file(f"cowley_v4/responses_raw_{session}.npy", root))  # (neurons, images, repeats)
        present = ~np.isnan(raw)
        if not np.array_equal(present.all(axis=0), present.any(axis=0)):
            raise DataError("responses_raw", "repeats missing for all neurons at once", "partial NaN")
        image_idx, repeat_idx = np.nonzero(present[0])
        responses = raw[:, image_idx, repeat_idx].T
        stimuli, stimulus_ids = TrialArray(images, image_idx), image_idx
    if responses.shape[0] != n_images and trials == "average":
        raise DataError("responses", f"{n_images} images like the zip", f"{responses.shape[0]}")
    return Recording(
        stimuli,
        responses,
        neuron_area=np.full(responses.shape[1], "V4"),
        stimulus_ids=stimulus_ids,
        tiers=split_by_stimulus(stimulus_ids),
        name=f"cowley_v4_{session}" + ("_raw" if trials == "raw" else ""),
    )


def tang_v1(
    root: str | Path | None = None,
    crop: bool = True,
    invert: bool = False,
    image_size: int | None = None,
) -> Recording:
    """Macaque V1 two-photon responses of 4 neurons to 9500 binary patterns (Tang et al. 2018).

    Parameters
    ----------
    root : str or Path, optional
    crop : bool
        Keep the central 40 x 40 pixels (rows and columns 60:100), as the source's models do;
        ``False`` keeps all 160 x 160.
    invert : bool
        Use ``1 - pattern``, as the source does before fitting.
    image_size : int, optional
        Resize (after cropping).

    Returns
    -------
    Recording
        Stimuli (9500, 1, H, W) float32 in {0, 1}; responses (9500, 4) trial-averaged dF/F-like
        values; split by pattern (80/10/10, ``RandomState(0)``).
    """
    path = data_file("tang_v1/tang_monkeyA_pattern9500_4neurons.npz", root)
    with np.load(path, allow_pickle=False) as npz:
        patterns, responses, ids = npz["patterns"], npz["responses"], npz["neuron_ids"]
    if crop:
        patterns = patterns[:, 60:100, 60:100]
    images = patterns[:, None].astype(np.float32)
    if invert:
        images = 1.0 - images
    if image_size is not None:
        images = resize_images(images, image_size)
    return Recording(images, responses, neuron_ids=ids.astype(str), neuron_area=np.full(len(ids), "V1"), name="tang_v1")


def allen_v1(root: str | Path | None = None, image_size: int | None = None) -> Recording:
    """Mouse V1 mean dF/F (%) of 212 cells to 118 natural scenes (Allen Brain Observatory).

    Parameters
    ----------
    root : str or Path, optional
    image_size : int, optional
        Resize the 31 x 31 images.

    Returns
    -------
    Recording
        Stimuli (118, 1, 31, 31) float32 0..255; responses (118, 212) mean over 50 repeats.
        Tiers: the source's 18 held-out scenes are ``test``; of the other 100, a
        ``RandomState(0)`` permutation puts 10 in ``validation`` and 90 in ``train``.
    """
    path = data_file("allen_v1/allen_natscenes_118x212_mean.npz", root)
    with np.load(path, allow_pickle=False) as npz:
        images, responses, test = npz["images"], npz["mean_response"], npz["test_scene_idx"]
    images = images[:, None].astype(np.float32)
    if image_size is not None:
        images = resize_images(images, image_size)
    n = len(images)
    tiers = np.full(n, "train", dtype="<U10")
    tiers[test] = "test"
    rest = np.flatnonzero(tiers == "train")
    tiers[rest[np.random.RandomState(0).permutation(len(rest))[: len(rest) // 10]]] = "validation"
    return Recording(images, responses, neuron_area=np.full(responses.shape[1], "V1"), tiers=tiers, name="allen_v1")
