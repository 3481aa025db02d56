"""Data stages: the synthetic data set (`kit demo`) and the folds (class subset + stratified folds)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.atomic import write_csv
from kit.csvfiles import read_csv
from kit.data.folds import fold_summary, folds_from_csv, write_folds
from kit.errors import KitError
from kit.pipeline.stage import stage


@dataclass
class SynthSettings:
    classes: int = 60
    images: int = 3000
    test_images: int = 600
    distractor_images: int = 200
    size: int = 128


@stage("synth", SynthSettings, kind="prepare")
def synth(s: SynthSettings, ctx) -> dict:
    """Generate the embedded synthetic GLDv2-layout data set; later stages read it as the data folder."""
    from kit.synth import generate, summary_line  # cv2: imported when a synth stage runs

    summary = generate(ctx.dir / "data", classes=s.classes, images=s.images, test_images=s.test_images,
                       size=s.size, seed=ctx.run.seed, distractors=s.distractor_images, workers=ctx.run.workers)
    ctx.log(summary_line(summary))
    return {"data": ctx.dir / "data"}


@dataclass
class FoldsSettings:
    top: int = 0              # keep the K most frequent classes (0 = off)
    min_images: int = 1       # keep every class with >= N images (used when top is 0)
    n_folds: int = 5
    clean: bool = False       # keep only the images DATA/train_clean.csv lists (GLDv2-clean)


def check_folds(s: FoldsSettings) -> None:
    if s.top < 0 or s.min_images < 1 or s.n_folds < 2:
        raise KitError("top >= 0, min_images >= 1 and n_folds >= 2")


@stage("folds", FoldsSettings, kind="prepare", check=check_folds)
def folds(s: FoldsSettings, ctx) -> dict:
    """Class subset + stratified folds of DATA/train.csv -> folds.csv and val_solution.csv."""
    clean = ctx.data / "train_clean.csv" if s.clean else None
    table, n_rows = folds_from_csv(ctx.data / "train.csv", clean, s.top or None, None if s.top else s.min_images,
                                   s.n_folds, False, ctx.run.seed)
    write_folds(table, ctx.dir / "folds.csv")
    ctx.log(fold_summary(table, n_rows))
    return {"folds": ctx.dir / "folds.csv", "val_solution": val_solution(ctx.dir / "folds.csv", ctx)}


def val_solution(folds_csv: Path, ctx) -> Path:
    """The validation fold's solution (id,landmarks) + the distractors (empty): GAP rewards ranking them low."""
    df = read_csv(folds_csv, dtype={"id": str})
    df = df[df["fold"] == ctx.run.val_fold]
    sol = pd.DataFrame({"id": df["id"], "landmarks": df["landmark_id"].astype(str)})
    extra = ctx.data / "distractors.csv"
    if extra.is_file():
        ids = read_csv(extra, ("id",), dtype={"id": str}, keep_default_na=False)["id"].str.strip()
        sol = pd.concat([sol, pd.DataFrame({"id": ids, "landmarks": ""})], ignore_index=True)
    return write_csv(sol, ctx.dir / "val_solution.csv")
