"""Loaders for the real recordings in ``shared/data`` (see its README for sources and citations).

Each loader takes ``root=None``: then ``$PROBTWIN_DATA``, then a ``shared/data`` folder beside the
repository checkout. A missing file raises ``FileNotFoundError`` naming it.
"""

from probtwin.datasets.digits import mnist_digits
from probtwin.datasets.motor import dad_m1
from probtwin.datasets.paths import data_file, data_root
from probtwin.datasets.saccade import nategh_perisaccadic
from probtwin.datasets.visual import allen_v1, cowley_v4, resize_images, tang_v1

__all__ = [
    "allen_v1",
    "cowley_v4",
    "dad_m1",
    "data_file",
    "data_root",
    "mnist_digits",
    "nategh_perisaccadic",
    "resize_images",
    "tang_v1",
]
