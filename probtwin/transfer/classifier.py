"""Image classifiers trained with a brain-derived regulariser (Li et al. 2019; Safarani et al. 2021).

The classifier's loss on a step is the cross-entropy of a batch of labelled images plus
``weight`` times one of:

- ``"neural"``: the squared difference between the similarity matrix of its hidden features on a
  batch of similarity images and a twin's (:func:`~probtwin.transfer.neural_similarity`), over the
  batch's pairs; with ``num_samples`` a posterior draw's matrix each step (the twin's uncertainty);
- ``"pixel"``: the same toward the images' pixel similarity (the control for what images alone
  carry, Attias et al. 2024);
- ``"random"``: the same toward the twin's matrix with the images relabelled at random
  (:func:`~probtwin.transfer.shuffled_similarity`: the structure without the images);
- ``"multitask"``: the squared error of a linear readout of its hidden features predicting the
  z-scored recorded responses to the similarity images (Safarani et al. 2021).

Similarity images are adapted to the classifier's input: averaged over colour channels, resized
(area averaging) to its size, and scaled to [0, 1] over the set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from probtwin.data.recording import Recording
from probtwin.errors import DataError
from probtwin.infer.progress import progress
from probtwin.transfer.similarity import (
    adapt_images,
    neural_similarity,
    pixel_similarity,
    shuffled_similarity,
    similarity_matrix,
)

__all__ = ["REGULARIZERS", "DigitClassifier", "fit_classifier"]

REGULARIZERS = (None, "neural", "pixel", "random", "multitask")
"""What a classifier's training can be regularised toward."""


class DigitClassifier(nn.Module):
    """A small convolutional classifier: two conv-ReLU-pool blocks, a hidden layer, the logits.

    Parameters
    ----------
    channels : int
        Input channels.
    size : (int, int)
        Input height and width (multiples of 4).
    classes : int
    width : int
        Channels of the first block (the second has twice as many).
    hidden : int
        Units of the hidden layer (the representation the regulariser shapes).
    """

    def __init__(
        self, channels: int = 1, size: tuple[int, int] = (28, 28), classes: int = 10, width: int = 16, hidden: int = 128
    ) -> None:
        super().__init__()
        self.input_shape = (channels, *size)
        self.blocks = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (size[0] // 4) * (size[1] // 4), hidden),
            nn.ReLU(),
        )
        self.logits = nn.Linear(hidden, classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Hidden representation, (n, hidden), of images (n, C, H, W) in [0, 1]."""
        return self.blocks(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits, (n, classes)."""
        return self.logits(self.features(images))


def _check_images(images: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(images, dtype=np.float32)
    y = np.asarray(labels)
    if x.ndim != 4:
        raise DataError("images", "an array (n, C, H, W)", f"shape {x.shape}")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DataError("images", "pixel values in [0, 1]", f"values from {np.nanmin(x):.3g} to {np.nanmax(x):.3g}")
    if y.shape != (len(x),) or y.dtype.kind not in "iu" or y.min() < 0:
        raise DataError("labels", f"non-negative integer classes, shape ({len(x)},)", f"{y.dtype} of shape {y.shape}")
    return x, y.astype(np.int64)


def _target(
    regularizer: str, twin: Any, sim: np.ndarray, responses: Any, num_samples: int | None, seed: int
) -> np.ndarray:
    """The regulariser's target on the similarity images: a similarity matrix (n, n) or one per
    draw (draws, n, n); or z-scored responses (n, neurons) for multi-task training."""
    if regularizer == "pixel":
        return pixel_similarity(sim)
    if regularizer == "multitask":
        if responses is None:
            raise DataError("responses", "recorded responses (n, neurons) to the similarity images", "None")
        r = np.asarray(responses, dtype=np.float32)
        if r.ndim != 2 or len(r) != len(sim) or not np.isfinite(r).all():
            raise DataError("responses", f"finite responses ({len(sim)}, neurons)", f"shape {r.shape}")
        return (r - r.mean(0)) / r.std(0).clip(1e-6)
    if twin is None:
        raise DataError("twin", f"a fitted twin for the {regularizer!r} regulariser", "None")
    target = neural_similarity(twin, sim, num_samples, seed)
    return shuffled_similarity(target, seed) if regularizer == "random" else target


def fit_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    regularizer: str | None = None,
    twin: Any = None,
    similarity_images: np.ndarray | Recording | None = None,
    seed: int = 0,
    *,
    responses: np.ndarray | None = None,
    weight: float = 1.0,
    num_samples: int | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    similarity_batch: int = 32,
    lr: float = 1e-3,
    width: int = 16,
    hidden: int = 128,
    classes: int | None = None,
    progress_bar: bool = True,
) -> DigitClassifier:
    """Train an image classifier, optionally regularised toward a brain-derived representation.

    Parameters
    ----------
    images : ndarray, shape (n, C, H, W)
        Training images, pixel values in [0, 1] (H, W multiples of 4).
    labels : ndarray of int, shape (n,)
    regularizer : {None, "neural", "pixel", "random", "multitask"}
        See the module's description.
    twin : ImageTwin, optional
        Needed by ``"neural"`` and ``"random"``.
    similarity_images : ndarray (m, C', H', W') or Recording, optional
        The images whose pairs are compared, in the twin's format (a recording: its stimuli,
        and for ``"multitask"`` its responses). Needed by every regulariser.
    seed : int
        Initialisation, batch order and the shuffled control.
    responses : ndarray, shape (m, neurons), optional
        ``"multitask"``: recorded responses to the similarity images (default: the recording's).
    weight : float
        The regulariser's weight against the cross-entropy.
    num_samples : int, optional
        ``"neural"``/``"random"``: a matrix per posterior draw, one drawn each step; ``None``:
        the posterior mean's.
    epochs, batch_size, similarity_batch, lr : int, int, int, float
        Adam over epochs of the training images; each step adds ``similarity_batch`` similarity
        images.
    width, hidden : int
        The classifier's size (:class:`DigitClassifier`).
    classes : int, optional
        Number of classes; by default the largest label + 1.
    progress_bar : bool

    Returns
    -------
    DigitClassifier
        In evaluation mode, on the CPU: images (n, C, H, W) in [0, 1] to class logits.
    """
    x, y = _check_images(images, labels)
    if regularizer not in REGULARIZERS:
        raise DataError("regularizer", f"one of {REGULARIZERS}", repr(regularizer))
    if not weight >= 0:
        raise DataError("weight", "a non-negative number", repr(weight))
    generator = torch.Generator().manual_seed(seed)
    n_classes = int(y.max()) + 1 if classes is None else int(classes)
    if n_classes <= y.max():
        raise DataError("classes", f"more than the largest label {y.max()}", repr(classes))
    with torch.random.fork_rng(devices=[]):  # initialised from the seed; torch's global generator untouched
        torch.manual_seed(seed)
        model = DigitClassifier(x.shape[1], x.shape[2:], n_classes, width, hidden)
    parameters = list(model.parameters())
    target = sim = readout = None
    if regularizer is not None:
        if similarity_images is None:
            raise DataError("similarity_images", f"images for the {regularizer!r} regulariser", "None")
        if isinstance(similarity_images, Recording):
            responses = np.asarray(similarity_images.responses) if responses is None else responses
            similarity_images = np.asarray(similarity_images.stimuli)
        if len(similarity_images) < 2:
            raise DataError("similarity_images", "at least two images", f"{len(similarity_images)}")
        target = torch.as_tensor(_target(regularizer, twin, similarity_images, responses, num_samples, seed))
        sim = torch.as_tensor(adapt_images(similarity_images, model.input_shape))
        if regularizer == "multitask":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                readout = nn.Linear(hidden, target.shape[1])
            parameters += list(readout.parameters())
    optimizer = torch.optim.Adam(parameters, lr=lr)
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    steps = -(-len(x) // batch_size)
    rounds = progress(range(int(epochs)), "classifier", unit="epoch") if progress_bar else range(int(epochs))
    for _ in rounds:
        order = torch.randperm(len(x), generator=generator)
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            loss = F.cross_entropy(model(xs[idx]), ys[idx])
            if target is not None and weight > 0:
                loss = loss + weight * _penalty(model, readout, sim, target, similarity_batch, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _penalty(model, readout, sim, target, batch: int, generator: torch.Generator) -> torch.Tensor:
    """The regulariser on one random batch of similarity images."""
    idx = torch.randperm(len(sim), generator=generator)[: max(2, batch)]
    features = model.features(sim[idx])
    if readout is not None:
        return F.mse_loss(readout(features), target[idx])
    if target.ndim == 3:  # one posterior draw's matrix
        target = target[torch.randint(len(target), (1,), generator=generator).item()]
    want = target[idx][:, idx]
    off = ~torch.eye(len(idx), dtype=torch.bool)
    return (similarity_matrix(features) - want)[off].pow(2).mean()
