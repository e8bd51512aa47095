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
VERSION = 3  # 2: constrained parameters are PyroParams (their unconstrained values stored as "<name>_unconstrained")
# 3: a readout's "spread" buffer (the recalibration's factors; 1 where a file has none)
_REGISTRY: dict[str, type] = {}

# version 1 -> 2: the same unconstrained numbers under the PyroParam names (softplus, exp and sigmoid
# parametrisations are unchanged)
_RENAMED_IN_2 = {
    "position_scale": "position_scale_unconstrained",
    "weight_scale": "weight_scale_unconstrained",
    "bias_scale": "bias_scale_unconstrained",
    "state_scale": "state_scale_unconstrained",
    "log_tau": "tau_unconstrained",
    "log_sigma_p": "sigma_p_unconstrained",
    "log_tau_state": "tau_state_unconstrained",
    "likelihood.raw_total_count": "likelihood.total_count_unconstrained",
    "likelihood.raw_concentration": "likelihood.concentration_unconstrained",
    "likelihood.raw_scale": "likelihood.scale_unconstrained",
    "likelihood.logit_q": "likelihood.q_unconstrained",
}


def _upgraded(state: dict, version: int, fresh: dict) -> dict:
    """A saved state in the current version's names; ``fresh`` the state of a new twin of the same
    settings (for what an older version did not save)."""
    if version < 3:
        spread = {key: value for key, value in fresh.items() if key.endswith(".spread") and key not in state}
        state = {**state, **spread}
    if version >= 2:
        return state
    out = {}
    for key, value in state.items():
        for old, new in _RENAMED_IN_2.items():
            if key == old or key.endswith("." + old):
                key = key[: len(key) - len(old)] + new
                break
        out[key] = value
    return out


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
            "version": VERSION,
            "class": type(self).__name__,
            "likelihood": self.likelihood_name,
            "config": self.config,
            "sessions": [vars(s) for s in self.specs],
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "history": None if self.history is None else self.history.to_dict(),
            "members": [{k: v.detach().cpu() for k, v in m.items()} for m in self.members],
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
    try:
        twin.load_state_dict(_upgraded(payload["state"], int(payload.get("version", 1)), twin.state_dict()))
    except RuntimeError as err:
        raise DataError("path", f"a {payload['class']} state this version can read", f"{path} ({err})") from None
    if payload.get("history"):
        twin.history = History(**payload["history"])
    twin.members = list(payload.get("members", []))
    twin.to(resolve_device(device))
    twin.train(False)
    return twin
