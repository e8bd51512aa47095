"""Posterior predictions: draws of the mean response, summarised."""

from __future__ import annotations

import numpy as np

from probtwin.errors import DataError

__all__ = ["Prediction"]


class Prediction:
    """Posterior draws of a twin's mean response.

    Parameters
    ----------
    samples : numpy.ndarray, shape (draws, trials, neurons)
        One posterior draw of every neuron's mean response per row (for a time series,
        (draws, trials, frames, neurons)).
    neuron_ids : numpy.ndarray, shape (neurons,), optional

    Attributes
    ----------
    samples : numpy.ndarray
    mean : numpy.ndarray, shape (trials, neurons)
        Posterior mean.

    Examples
    --------
    >>> p = Prediction(np.arange(12.0).reshape(3, 2, 2))
    >>> p.mean.tolist()
    [[4.0, 5.0], [6.0, 7.0]]
    >>> p.quantile(0.5).shape
    (2, 2)
    """

    def __init__(self, samples: np.ndarray, neuron_ids: np.ndarray | None = None) -> None:
        self.samples = samples
        self.neuron_ids = neuron_ids
        self.mean = samples.mean(axis=0)

    @property
    def num_samples(self) -> int:
        return self.samples.shape[0]

    def quantile(self, q: float | np.ndarray) -> np.ndarray:
        """Posterior quantile(s) of the mean response, shape (trials, neurons) or (len(q), ...)."""
        q = np.asarray(q, dtype=float)
        if np.any((q < 0) | (q > 1)):
            raise DataError("q", "quantiles in [0, 1]", str(q))
        return np.quantile(self.samples, q, axis=0)

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central credible interval: lower and upper bounds, each (trials, neurons)."""
        lo = (1 - level) / 2
        bounds = self.quantile([lo, 1 - lo])
        return bounds[0], bounds[1]

    def __repr__(self) -> str:
        return f"Prediction({self.num_samples} draws of shape {self.mean.shape})"
