"""Ground-truth brains: simulated populations with known parameters, for validation and demos."""

from probtwin.simulate.free_viewing import FreeViewingPopulation, free_viewing
from probtwin.simulate.images import pink_noise_images, shift_images
from probtwin.simulate.motor import MotorSimulation, motor
from probtwin.simulate.noise import LIKELIHOODS, observe
from probtwin.simulate.population import V1Population, gabor_bank
from probtwin.simulate.v1 import Simulation, v1
from probtwin.simulate.video import VideoPopulation, temporal_kernel, video

__all__ = [
    "FreeViewingPopulation",
    "LIKELIHOODS",
    "MotorSimulation",
    "Simulation",
    "V1Population",
    "VideoPopulation",
    "free_viewing",
    "gabor_bank",
    "motor",
    "observe",
    "pink_noise_images",
    "shift_images",
    "temporal_kernel",
    "v1",
    "video",
]
