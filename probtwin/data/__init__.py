"""The data layer: the Recording container, its validation, loaders and batching."""

from probtwin.data.arrays import TrialArray, TrialStack
from probtwin.data.batching import TrialBatches, batch_arrays
from probtwin.data.nwb import load_nwb, nwb_contents
from probtwin.data.padding import frame_counts, frame_mask, hold_padding
from probtwin.data.recording import Recording
from probtwin.data.sensorium import load_sensorium
from probtwin.data.splits import split_by_repeat, split_by_stimulus, split_consecutive

__all__ = [
    "Recording",
    "TrialArray",
    "TrialBatches",
    "TrialStack",
    "batch_arrays",
    "frame_counts",
    "frame_mask",
    "hold_padding",
    "load_nwb",
    "load_sensorium",
    "nwb_contents",
    "split_by_repeat",
    "split_by_stimulus",
    "split_consecutive",
]
