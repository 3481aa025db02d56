"""Checkpoints `runs/<exp>/fold<N>/{last,best}.pt`: atomic save, checked load, model rebuild.

A .pt is a dict: model (state_dict), config (dict), label_map, class_counts, epoch, metrics, and in
last.pt also optimizer/scheduler/scaler/rng state so `kit train --resume` continues exactly.
Every .pt kit reads goes through `load_torch_file`: `torch.load(weights_only=True)`, so a crafted
file cannot run code; kit stores only tensors, numbers, strings and plain containers.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from kit.errors import KitError
from kit.io import atomic_path

REQUIRED_KEYS = ("model", "config", "label_map")
_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL (\S+)|but got <class '([^']+)'>")


def _numpy_globals() -> list:
    """Exact numpy types that checkpoints written before kit stored RNG state as tensors contain
    (arrays and scalars: data only, rebuilt without calling user code)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    dtypes = [getattr(np.dtypes, n) for n in ("UInt32DType", "Int64DType", "Int32DType", "Float64DType",
                                               "Float32DType", "BoolDType") if hasattr(np, "dtypes")]
    return [np.ndarray, np.dtype, core.multiarray.scalar, core.multiarray._reconstruct, *dtypes]


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint", map_location="cpu"):
    """`torch.load(path, weights_only=True)`: tensors, numbers, strings and plain containers only, so a
    crafted file cannot run code. KitError (one line, naming the file) when it holds anything else."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        m = _UNSUPPORTED.search(str(e))
        if m:  # a global (function, class) outside torch's allowlist: what a code-running pickle needs
            raise KitError(f"{path}: refusing to load {what}: it holds {m.group(1) or m.group(2)}, not only "
                           "tensors and plain data (loading it could run code)") from None
        detail = str(e).split("WeightsUnpickler error:", 1)[-1]
        raise KitError(f"{path}: cannot read {what} (not a torch file, or a pickle kit does not load: "
                       f"{_first_line(detail)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError, ImportError,
            TypeError, KeyError, IndexError, MemoryError) as e:
        raise KitError(f"{path}: cannot read {what} ({type(e).__name__}: {_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0][:200] if lines else type(e).__name__


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """torch.save to a temp file, then rename: a kill mid-write never leaves a broken checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def resolve_checkpoint(path_or_run_dir: str | os.PathLike, name: str = "best.pt") -> Path:
    """A .pt file as given, or `name` inside a run directory."""
    p = Path(path_or_run_dir)
    if p.is_dir():
        p = p / name
    if not p.is_file():
        raise KitError(f"{p}: checkpoint not found")
    return p


def load_checkpoint(path_or_run_dir: str | os.PathLike, name: str = "best.pt", map_location="cpu") -> dict:
    """Load a kit checkpoint dict (weights only), KitError if it is missing, unsafe, unreadable or not kit's."""
    p = resolve_checkpoint(path_or_run_dir, name)
    state = load_torch_file(p, "checkpoint", map_location)
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise KitError(f"{p}: not a kit checkpoint (missing {', '.join(missing)})")
    for key, kind in (("model", dict), ("config", dict), ("label_map", (list, tuple))):
        if not isinstance(state[key], kind):
            raise KitError(f"{p}: not a kit checkpoint ('{key}' is a {type(state[key]).__name__})")
    return state


def unwrap(model):
    """The bare model inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def load_model(path_or_run_dir: str | os.PathLike, device="cpu"):
    """-> (model in eval mode on `device`, cfg, label_map) from a .pt file or a run dir (best.pt)."""
    from kit.models.model import build_model

    state = load_checkpoint(path_or_run_dir)
    from kit.config import config_from_dict

    try:
        cfg = config_from_dict(state["config"])
    except KitError as e:
        raise KitError(f"{resolve_checkpoint(path_or_run_dir)}: {e}") from None
    build_cfg = config_from_dict(state["config"]).model
    build_cfg.weights = "none"  # the checkpoint holds all weights; skip loading pretrained ones
    label_map = list(state["label_map"])
    model = build_model(build_cfg, len(label_map), state.get("class_counts"))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise KitError(f"{resolve_checkpoint(path_or_run_dir)}: weights do not fit the model "
                       f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), cfg, label_map
