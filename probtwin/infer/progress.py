"""Progress bars for long steps (fitting, queries over many chunks, optimisation), with tqdm.

A bar appears only once its step has run for ``DELAY`` seconds, so that quick calls print
nothing; ``PROBTWIN_PROGRESS=0`` in the environment, or :func:`show_progress` (``False``), turns
every bar off (a fit's bar also follows ``fit(progress=...)``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["DELAY", "progress", "progress_enabled", "show_progress"]

DELAY = 2.0
"""Seconds a step runs before its bar appears."""

_enabled: list[bool] = []  # the innermost show_progress setting, if any


def progress_enabled() -> bool:
    """Whether bars are shown: the innermost :func:`show_progress`, else the environment's
    ``PROBTWIN_PROGRESS`` (on unless ``0``, ``false`` or ``no``)."""
    if _enabled:
        return _enabled[-1]
    return os.environ.get("PROBTWIN_PROGRESS", "1").strip().lower() not in ("0", "false", "no")


@contextmanager
def show_progress(enabled: bool = True) -> Iterator[None]:
    """Show (or hide) progress bars inside the block.

    Examples
    --------
    >>> from probtwin.infer.progress import progress_enabled, show_progress
    >>> with show_progress(False):
    ...     progress_enabled()
    False
    """
    _enabled.append(bool(enabled))
    try:
        yield
    finally:
        _enabled.pop()


def progress(iterable: Iterable[Any], desc: str, total: int | None = None, unit: str = "it") -> Iterable[Any]:
    """``iterable`` with a bar that appears after ``DELAY`` seconds (none when disabled).

    Parameters
    ----------
    iterable : iterable
    desc : str
        The step, e.g. ``"predict"``.
    total : int, optional
        Number of items, where ``len(iterable)`` is not defined.
    unit : str
    """
    if not progress_enabled():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, delay=DELAY, leave=False)
