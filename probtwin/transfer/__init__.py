"""Robustness transfer: regularise image classifiers with a twin's neural representation, and
measure what transfers (noise, common corruptions, adversarial perturbations)."""

from probtwin.transfer.classifier import REGULARIZERS, DigitClassifier, fit_classifier
from probtwin.transfer.robustness import CORRUPTIONS, accuracy, corrupt, fgsm, gaussian_noise, pgd, robustness
from probtwin.transfer.similarity import (
    adapt_images,
    neural_similarity,
    pixel_similarity,
    representational_similarity,
    shuffled_similarity,
    similarity_matrix,
)

__all__ = [
    "CORRUPTIONS",
    "REGULARIZERS",
    "DigitClassifier",
    "accuracy",
    "adapt_images",
    "corrupt",
    "fgsm",
    "fit_classifier",
    "gaussian_noise",
    "neural_similarity",
    "pgd",
    "pixel_similarity",
    "representational_similarity",
    "robustness",
    "shuffled_similarity",
    "similarity_matrix",
]
