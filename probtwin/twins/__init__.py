"""The generative models (one file per twin) on a shared Twin base class."""

from probtwin.twins.base import SessionSpec, Twin, load
from probtwin.twins.image import ImageTwin
from probtwin.twins.likelihoods import LIKELIHOODS, Likelihood
from probtwin.twins.prediction import Prediction

__all__ = ["LIKELIHOODS", "ImageTwin", "Likelihood", "Prediction", "SessionSpec", "Twin", "load"]
