"""Saving and loading twins: configuration and state in one file that loads with
``torch.load(..., weights_only=True)`` (loading never runs code), and the registry of twin
classes that a file names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from probtwin.data.registry import SessionSpec
from probtwin.errors import DataError
from probtwin.infer import History, resolve_device

__all__ = ["Persistent", "load"]

FORMAT = "probtwin-twin"
_REGISTRY: dict[str, type] = {}


class Persistent:
    """Mixin of every twin: ``save``, and registration of its class for :func:`load`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def save(self, path: str | Path) -> Path:
        """Write configuration and state; :func:`probtwin.load` reads it without running code."""
        path = Path(path)
        payload = {
            "format": FORMAT,
            "version": 1,
            "class": type(self).__name__,
            "likelihood": self.likelihood_name,
            "config": self.config,
            "sessions": [vars(s) for s in self.specs],
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "history": None if self.history is None else self.history.to_dict(),
        }
        torch.save(payload, path)
        return path


def load(path: str | Path, device: str | torch.device = "cpu", **modules: Any) -> Any:
    """Load a twin saved by :meth:`Twin.save` (weights only: loading never executes code).

    ``modules`` pass back the modules whose code a twin cannot save (``core=`` for a custom core).

    Raises
    ------
    DataError
        When the file is missing or is not a saved twin.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("path", "a file saved by twin.save", f"no file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise DataError("path", "a file saved by twin.save", f"{path} ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("class") not in _REGISTRY:
        raise DataError("path", "a file saved by twin.save", f"{path} (another kind of file)")
    cls = _REGISTRY[payload["class"]]
    specs = [SessionSpec(**s) for s in payload["sessions"]]
    twin = cls._from_specs(specs, payload["likelihood"], payload["config"], **modules)
    twin.load_state_dict(payload["state"])
    if payload.get("history"):
        twin.history = History(**payload["history"])
    twin.to(resolve_device(device))
    twin.train(False)
    return twin
