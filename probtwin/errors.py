"""Errors raised by probtwin."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Malformed input: names the field, what was expected and what was found.

    Parameters
    ----------
    field : str
        The argument or array the problem is in, e.g. ``"responses"``.
    expected : str
        What a valid value looks like.
    found : str
        What was given.

    Examples
    --------
    >>> err = DataError("responses", "a 2-D or 3-D array", "shape (5,)")
    >>> str(err)
    'responses: expected a 2-D or 3-D array, found shape (5,)'
    """

    def __init__(self, field: str, expected: str, found: str) -> None:
        self.field = field
        self.expected = expected
        self.found = found
        super().__init__(f"{field}: expected {expected}, found {found}")
