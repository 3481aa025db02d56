"""Checkpoints `runs/<exp>/fold<N>/{last,best}.pt`: atomic save, checked load, model rebuild."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from kit.atomic import atomic_path
from kit.config import config_from_dict
from kit.errors import KitError
from kit.models.model import build_model
from kit.models.safe_load import load_torch_file

REQUIRED_KEYS = ("model", "config", "label_map")


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """torch.save to a temp file, then rename: a kill mid-write never leaves a broken checkpoint."""
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


def load_model(path_or_run_dir: str | os.PathLike, device="cpu"):
    """-> (model in eval mode on `device`, cfg, label_map) from a .pt file or a run dir (best.pt)."""
    state = load_checkpoint(path_or_run_dir)
    try:
        cfg = config_from_dict(state["config"])
    except KitError as e:
        raise KitError(f"{resolve_checkpoint(path_or_run_dir)}: {e}") from None
    label_map = list(state["label_map"])  # the checkpoint holds all weights: no pretrained ones loaded
    model = build_model(dataclasses.replace(cfg.model, weights="none"), len(label_map), state.get("class_counts"))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise KitError(f"{resolve_checkpoint(path_or_run_dir)}: weights do not fit the model "
                       f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), cfg, label_map
