"""Deterministic torch building blocks (no Pyro): cores, readouts, shifters, modulators."""

from probtwin.nn.core import ConvCore, laplace_penalty
from probtwin.nn.energy import contrast_energy, energy_rf_centres, energy_rf_start
from probtwin.nn.mlp import mlp
from probtwin.nn.modulator import Modulator
from probtwin.nn.readout import GaussianReadout, PositionPredictor, read_features, readout_response
from probtwin.nn.shifter import Shifter, shift_frames

__all__ = [
    "ConvCore",
    "GaussianReadout",
    "Modulator",
    "PositionPredictor",
    "Shifter",
    "contrast_energy",
    "energy_rf_centres",
    "energy_rf_start",
    "laplace_penalty",
    "mlp",
    "read_features",
    "readout_response",
    "shift_frames",
]
