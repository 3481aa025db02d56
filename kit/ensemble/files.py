"""Prediction files for ensembles: .npz or submission CSV, each experiment's newest test file, validation GAP."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kit.errors import KitError
from kit.predictions import Predictions, load_predictions
from kit.truth import load_truth, score_gap


def load_any(path: str | Path) -> Predictions:
    """A prediction .npz, or a submission CSV (`id,landmarks` = "label score") as k=1 Predictions."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_predictions(path)
    if path.suffix == ".csv":
        from kit.submission import read_submission  # pandas: not imported for `kit --help`

        df = read_submission(path)
        return Predictions(df["id"].to_numpy(), df["label"].to_numpy(), df["score"].to_numpy())
    raise KitError(f"{path}: expected a prediction .npz or a submission .csv")


def latest_test_files(predictions_dir: str | Path = "predictions") -> list[Path]:
    """The newest `test_*.npz` (by modification time) of every experiment directory, sorted by name."""
    root = Path(predictions_dir)
    if not root.is_dir():
        raise KitError(f"{root}: no submissions directory (run `kit predict --split test` first)")
    newest = (max(exp.glob("test_*.npz"), key=lambda p: (p.stat().st_mtime, p.name), default=None)
              for exp in sorted(p for p in root.iterdir() if p.is_dir()))
    found = [f for f in newest if f is not None]
    if not found:
        raise KitError(f"{root}: no experiment has a test_*.npz prediction file")
    return found


def validation_gap(exp_dir: str | Path, truth=None, runs_dir: str | Path = "runs") -> float | None:
    """Mean GAP of an experiment's val (else oof) fold files against `truth` or each run's folds CSV; None if none."""
    from kit.config import read_yaml_mapping  # yaml: not imported for `kit --help`

    exp_dir = Path(exp_dir)
    files = sorted(exp_dir.glob("val_fold*.npz")) or sorted(exp_dir.glob("oof_fold*.npz"))
    gaps = []
    for f in files:
        fold_truth = truth
        if fold_truth is None:
            fold = re.search(r"fold(\d+)", f.name).group(1)
            cfg_path = Path(runs_dir) / exp_dir.name / f"fold{fold}" / "config.yaml"
            if not cfg_path.is_file():
                raise KitError(f"{f}: no --solution given and no {cfg_path} naming its folds CSV")
            data = read_yaml_mapping(cfg_path).get("data")
            folds_csv = data.get("folds_csv") if isinstance(data, dict) else None
            if not folds_csv:
                raise KitError(f"{cfg_path}: no data.folds_csv")
            fold_truth = load_truth(folds_csv)
        gaps.append(score_gap(load_predictions(f), fold_truth))
    return float(np.mean(gaps)) if gaps else None
