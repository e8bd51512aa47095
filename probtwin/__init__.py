"""probtwin: probabilistic digital twins of neural populations, on Pyro."""

from probtwin import datasets, metrics, simulate
from probtwin.data import Recording, load_nwb, load_sensorium
from probtwin.errors import DataError

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "Recording",
    "datasets",
    "load_nwb",
    "load_sensorium",
    "metrics",
    "simulate",
]
