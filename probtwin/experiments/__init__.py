"""In-silico experiments on a twin's posterior: stimulus families, tuning curves, receptive
fields, most exciting inputs and the effects of behavioural state; lesions and stimulation of a graph
twin's units and their effect on behaviour.

Every experiment is vectorised over posterior draws and neurons and returns labelled arrays
(xarray) with ``sample`` and ``neuron`` dimensions (neuron ids as coordinates) beside the
stimulus parameters, so that credible intervals are one ``.quantile(..., "sample")`` away and
:func:`probtwin.hypothesis.test` can read the effects.
"""

from probtwin.experiments.lesion import lesion, stimulate
from probtwin.experiments.mei import mei
from probtwin.experiments.receptive_fields import receptive_fields
from probtwin.experiments.states import compare_states, orientation_selectivity, preferred_orientation
from probtwin.experiments.stimuli import StimulusSet, gabors, gratings, sparse_noise
from probtwin.experiments.tuning import predicted_responses, tuning_curve

__all__ = [
    "StimulusSet",
    "compare_states",
    "gabors",
    "gratings",
    "lesion",
    "mei",
    "predicted_responses",
    "orientation_selectivity",
    "preferred_orientation",
    "receptive_fields",
    "sparse_noise",
    "stimulate",
    "tuning_curve",
]
