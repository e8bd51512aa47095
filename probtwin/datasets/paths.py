"""Where the real recordings live: ``root``, then ``$PROBTWIN_DATA``, then ``shared/data`` beside
the repository checkout."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "data_file"]

ENV_VAR = "PROBTWIN_DATA"


def _candidates(root: str | Path | None) -> list[Path]:
    if root is not None:
        return [Path(root)]
    out = []
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]))
    repo = Path(__file__).resolve().parents[2]
    out.append(repo.parent / "shared" / "data")
    return out


def data_root(root: str | Path | None = None) -> Path:
    """The folder that holds the data sets (the first candidate that exists).

    Raises
    ------
    FileNotFoundError
        Naming every place looked in.
    """
    places = _candidates(root)
    for place in places:
        if place.is_dir():
            return place
    raise FileNotFoundError(
        "probtwin data folder not found; looked in "
        + ", ".join(str(p) for p in places)
        + f" (pass root=..., or set {ENV_VAR})"
    )


def data_file(relative: str, root: str | Path | None = None) -> Path:
    """Path of one file of a data set, e.g. ``"cowley_v4/images_201025.zip"``.

    Raises
    ------
    FileNotFoundError
        Naming the missing file and where it was looked for.
    """
    places = _candidates(root)
    for place in places:
        if (place / relative).is_file():
            return place / relative
    raise FileNotFoundError(
        f"missing data file {relative!r}; looked in "
        + ", ".join(str(p) for p in places)
        + f" (pass root=..., or set {ENV_VAR})"
    )
