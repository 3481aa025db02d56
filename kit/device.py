"""The one device chooser: `auto` (CUDA when present), `cpu` or `cuda`; every stage asks here."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kit.errors import KitError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def choose_device(pref: str = "auto", local_rank: int = 0) -> torch.device:
    import torch

    if pref not in DEVICES:
        raise KitError(f"device: unknown device '{pref}' (valid: {', '.join(DEVICES)})")
    if pref == "cuda" and not torch.cuda.is_available():
        raise KitError("device=cuda but no CUDA GPU is available (use device=auto or cpu)")
    if pref == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)
