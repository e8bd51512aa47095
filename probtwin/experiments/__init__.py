"""In-silico experiments on a twin's posterior: stimulus families, tuning curves, receptive
fields, most exciting inputs and the effects of behavioural state; direction tuning and latencies
of a video twin; lesions and stimulation of a graph
twin's units and their effect on behaviour.

Every experiment is vectorised over posterior draws and neurons and returns labelled arrays
(xarray) with ``sample`` and ``neuron`` dimensions (neuron ids as coordinates) beside the
stimulus parameters, so that credible intervals are one ``.quantile(..., "sample")`` away and
:func:`probtwin.hypothesis.test` can read the effects.
"""

from probtwin.experiments.lesion import lesion, stimulate
from probtwin.experiments.mei import mei
from probtwin.experiments.receptive_fields import receptive_fields
from probtwin.experiments.states import (
    compare_states,
    direction_selectivity,
    orientation_selectivity,
    preferred_direction,
    preferred_orientation,
)
from probtwin.experiments.stimuli import (
    StimulusSet,
    drifting_gratings,
    flashes,
    gabors,
    gratings,
    moving_bars,
    sparse_noise,
)
from probtwin.experiments.temporal import flash_response, kernel_latency, response_latency
from probtwin.experiments.tuning import predicted_responses, tuning_curve

__all__ = [
    "StimulusSet",
    "compare_states",
    "direction_selectivity",
    "drifting_gratings",
    "flash_response",
    "flashes",
    "gabors",
    "gratings",
    "kernel_latency",
    "lesion",
    "mei",
    "moving_bars",
    "predicted_responses",
    "orientation_selectivity",
    "preferred_direction",
    "preferred_orientation",
    "receptive_fields",
    "response_latency",
    "sparse_noise",
    "stimulate",
    "tuning_curve",
]
