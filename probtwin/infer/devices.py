"""Choosing the device: CPU by default, CUDA when asked for or (with "auto") available."""

from __future__ import annotations

import torch

from probtwin.errors import DataError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, else CPU; otherwise the device named.

    Raises
    ------
    DataError
        When CUDA is asked for and is not available.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DataError("device", "'auto', 'cpu' or 'cuda[:k]'", repr(device)) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError("device", "an available device (CUDA is not available here)", repr(device))
    return dev
