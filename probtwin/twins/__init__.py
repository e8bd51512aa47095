"""The generative models (one file per twin) on a shared Twin base class."""

from probtwin.twins.base import SessionSpec, Twin, load
from probtwin.twins.flows import MonotoneFlow
from probtwin.twins.gaze import GazeTwin
from probtwin.twins.image import ImageTwin
from probtwin.twins.likelihoods import LIKELIHOODS, Likelihood
from probtwin.twins.motor import MotorGraphTwin
from probtwin.twins.noise import NOISE_MODELS, FlowNoise, IndependentNoise, LatentCountNoise, NoiseModel
from probtwin.twins.prediction import Prediction
from probtwin.twins.video import VideoTwin

__all__ = [
    "LIKELIHOODS",
    "NOISE_MODELS",
    "FlowNoise",
    "GazeTwin",
    "ImageTwin",
    "IndependentNoise",
    "LatentCountNoise",
    "Likelihood",
    "MonotoneFlow",
    "MotorGraphTwin",
    "NoiseModel",
    "Prediction",
    "SessionSpec",
    "Twin",
    "VideoTwin",
    "load",
]
