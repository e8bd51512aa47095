"""Shared fixtures: the real-data folder (tests skip, with a message, only where it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probtwin.datasets.paths import _candidates


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real recordings; skips the test where it is absent (a user's fresh clone)."""
    for place in _candidates(None):
        if place.is_dir():
            return place
    pytest.skip("real recordings not found (set PROBTWIN_DATA or put shared/data beside the checkout)")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
