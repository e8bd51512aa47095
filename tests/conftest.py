"""Shared fixtures: the real-data folder (tests skip, with a message, only where it is absent) and
the same global torch random state at the start of every test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from probtwin.datasets.paths import _candidates


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real recordings; skips the test where it is absent (a user's fresh clone)."""
    for place in _candidates(None):
        if place.is_dir():
            return place
    pytest.skip("real recordings not found (set PROBTWIN_DATA or put shared/data beside the checkout)")


@pytest.fixture(autouse=True)
def _same_global_random_state():
    """Every test starts from the same global torch random state, whatever ran before it: a
    test's draws, and so its verdict, do not depend on which tests ran first (numpy draws come
    from seeded generators)."""
    torch.manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
