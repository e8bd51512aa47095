"""probtwin: probabilistic digital twins of neural populations, on Pyro."""

from probtwin import calibration, datasets, experiments, hypothesis, infer, metrics, simulate, transfer
from probtwin.data import Recording, load_nwb, load_sensorium
from probtwin.errors import DataError
from probtwin.twins import GazeTwin, ImageTwin, MotorGraphTwin, Prediction, VideoTwin, load

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "GazeTwin",
    "ImageTwin",
    "MotorGraphTwin",
    "Prediction",
    "Recording",
    "VideoTwin",
    "calibration",
    "datasets",
    "experiments",
    "hypothesis",
    "infer",
    "load",
    "load_nwb",
    "load_sensorium",
    "metrics",
    "simulate",
    "transfer",
]
