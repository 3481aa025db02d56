"""One fold as torch DataLoaders (folds CSV + GLDv2 layout); order and augmentation depend on (seed, epoch, index)."""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler, default_collate

from kit.csvfiles import read_csv
from kit.data.augment import transforms_for
from kit.errors import KitError
from kit.ids import clean_ids
from kit.images import MAX_PIXELS, decode_image
from kit.layout import image_path

log = logging.getLogger("kit.data.dataset")
FOLD_COLUMNS = ("id", "landmark_id", "label", "fold")


@dataclass
class FoldSplit:
    """The rows of one fold: train (fold not in {N, -1}) and val (fold == N), plus label metadata."""
    train: pd.DataFrame
    val: pd.DataFrame
    label_map: list[int]      # original landmark_id of each label 0..C-1
    class_counts: list[int]   # training images per label
    missing: int = 0          # rows dropped because their image file does not exist


def read_folds(folds_csv: str | os.PathLike, fold: int) -> tuple[pd.DataFrame, list[int]]:
    """Read and check a folds CSV; return (rows, label_map). KitError if fold N has no rows."""
    if not Path(folds_csv).is_file():
        raise KitError(f"{folds_csv}: file not found (make it with `kit folds --labels DATA/train.csv --top 2000 "
                       f"--out {folds_csv}`; for a first try, `kit synth` writes data to make folds from)")
    df = read_csv(folds_csv, required=FOLD_COLUMNS, dtype={"id": str}, keep_default_na=False)
    if df.empty:
        raise KitError(f"{folds_csv}: no rows")
    df["id"] = clean_ids(folds_csv, df["id"])
    for col in ("landmark_id", "label", "fold"):
        if not pd.api.types.is_integer_dtype(df[col]):
            num = pd.to_numeric(df[col], errors="coerce")
            row = int(np.flatnonzero((num.isna() | (num % 1 != 0)).to_numpy())[0])
            raise KitError(f"{folds_csv}: row {row + 2}: column {col} is not an integer ({df[col].iloc[row]!r})")
    pairs = df[["label", "landmark_id"]].drop_duplicates().sort_values("label")
    if pairs["label"].duplicated().any():
        lab = int(pairs.loc[pairs["label"].duplicated(), "label"].iloc[0])
        raise KitError(f"{folds_csv}: label {lab} maps to several landmark_ids")
    n = int(pairs["label"].max()) + 1
    if pairs["label"].min() < 0 or len(pairs) != n:
        raise KitError(f"{folds_csv}: labels must be contiguous 0..C-1 (found {len(pairs)} labels, max {n - 1})")
    if not (df["fold"] == fold).any():
        folds = sorted(int(f) for f in df["fold"].unique() if f >= 0)
        raise KitError(f"{folds_csv}: fold {fold} has no rows (folds present: {folds})")
    return df, pairs["landmark_id"].astype(int).tolist()


def drop_missing(df: pd.DataFrame, data_dir, strict: bool, split: str = "train") -> tuple[pd.DataFrame, int]:
    """Drop rows whose image file is absent; log the count and the first few paths (KitError if strict)."""
    root = Path(data_dir) / split
    if not root.is_dir():
        raise KitError(f"{root}: image directory not found")
    have = {f[:-4] for _, _, files in os.walk(root) for f in files if f.endswith(".jpg")}  # one walk, no stat per row
    missing = ~df["id"].isin(have)
    n = int(missing.sum())
    if n:
        paths = [str(image_path(data_dir, split, i)) for i in df.loc[missing, "id"].head(5)]
        if strict:
            raise KitError(f"{n} image(s) missing, e.g. {paths[0]} (run without --strict to skip them)")
        log.warning("skipping %d missing image(s), first: %s", n, ", ".join(paths))
    return df.loc[~missing].reset_index(drop=True), n


def split_fold(cfg, fold: int) -> FoldSplit:
    """Rows for training fold N (fold not in {N, -1}) and validating on it (fold == N)."""
    df, label_map = read_folds(cfg.data.folds_csv, fold)
    df, missing = drop_missing(df, cfg.data.data_dir, cfg.data.strict)
    train = df[(df["fold"] != fold) & (df["fold"] != -1)].reset_index(drop=True)
    val = df[df["fold"] == fold].reset_index(drop=True)
    if train.empty or val.empty:
        which = "training" if train.empty else "validation"
        raise KitError(f"{cfg.data.folds_csv}: fold {fold} leaves no {which} images with existing files")
    counts = np.bincount(train["label"].to_numpy(), minlength=len(label_map)).tolist()
    return FoldSplit(train, val, label_map, counts, missing)


class LandmarkDataset:
    """Map-style dataset over rows (id, label): dict(image, label, id), or {"skipped": id} if undecodable."""

    def __init__(self, df: pd.DataFrame, data_dir, transform, split: str = "train", seed: int = 0,
                 strict: bool = False, max_pixels: int = MAX_PIXELS, image_size: int = 0):
        self.ids = df["id"].astype(str).tolist()
        self.labels = df["label"].astype(int).tolist() if "label" in df else [-1] * len(df)
        self.data_dir, self.split, self.transform = data_dir, split, transform
        self.seed, self.epoch, self.strict, self.max_pixels = seed, 0, strict, max_pixels
        self.min_side = 2 * int(image_size)

    @classmethod
    def from_config(cls, df: pd.DataFrame, cfg, train: bool, split: str = "train") -> "LandmarkDataset":
        """The dataset of `df` with cfg.data's transform, folder, strictness, pixel cap, image size, and cfg.seed."""
        d = cfg.data
        return cls(df, d.data_dir, transforms_for(cfg, train), split=split, seed=cfg.seed, strict=d.strict,
                   max_pixels=d.max_pixels, image_size=d.image_size)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        path = image_path(self.data_dir, self.split, self.ids[index])
        img = decode_image(path, self.max_pixels, strict=self.strict, min_side=self.min_side)  # strict: KitError
        if img is None:
            log.warning("skipping unreadable image %s", path)
            return {"skipped": self.ids[index]}
        if hasattr(self.transform, "set_random_state"):  # the augmentation depends on (seed, epoch, index) only
            ss = np.random.SeedSequence([self.seed, self.epoch, index])
            self.transform.set_random_state(np.random.default_rng(ss), random.Random(int(ss.generate_state(1)[0])))
        return {"image": self.transform(image=img)["image"], "label": self.labels[index], "id": self.ids[index]}


def collate(items):
    """default_collate of the decodable items + "skipped" ids (no "image" when all were undecodable)."""
    skipped = [x["skipped"] for x in items if x is not None and "skipped" in x]
    good = [x for x in items if x is not None and "skipped" not in x]
    return (default_collate(good) if good else {}) | {"skipped": skipped}


def has_images(batch) -> bool:
    """False for a batch whose images were all undecodable (or None from an older collate)."""
    return batch is not None and "image" in batch


def _worker_init(_):
    # No cv2.setNumThreads here: in a forked worker it deadlocks when the parent has used OpenCV's
    # thread pool (kit.cli sets OpenCV to 0 threads at start, which workers inherit).
    torch.set_num_threads(1)


def make_loader(dataset, batch_size: int, train: bool, seed: int, num_workers: int, device_type: str,
                world_size: int = 1, rank: int = 0):
    """DataLoader ordered by (seed, epoch); validation unshuffled, sharded without padding (rank r: rows r, r+W, ...)."""
    drop_last = train and len(dataset) >= batch_size * world_size
    if train:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                     drop_last=drop_last)
    else:  # every image exactly once over all ranks (DistributedSampler would pad with repeats)
        sampler = range(rank, len(dataset), world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate, pin_memory=device_type == "cuda", drop_last=drop_last,
                      worker_init_fn=_worker_init if num_workers > 0 else None)


def set_epoch(loader, epoch: int) -> None:
    """Tell sampler and dataset which epoch is next (fixes order and augmentation)."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    loader.dataset.epoch = epoch


@dataclass
class Loaders:
    train: object
    val: object
    split: FoldSplit


def make_loaders(cfg, fold: int, world_size: int = 1, rank: int = 0, device_type: str = "cpu",
                 split: FoldSplit | None = None) -> Loaders:
    """Train/val DataLoaders of fold N (val sharded over ranks under DDP, unshuffled)."""
    split, d = split or split_fold(cfg, fold), cfg.data
    if d.batch_size % world_size:  # data.batch_size is the global batch: split evenly over DDP ranks
        raise KitError(f"data.batch_size={d.batch_size} is not divisible by the {world_size} DDP processes")
    loaders = [make_loader(LandmarkDataset.from_config(rows, cfg, train), d.batch_size // world_size, train, cfg.seed,
                           d.num_workers, device_type, world_size, rank)
               for rows, train in ((split.train, True), (split.val, False))]
    return Loaders(*loaders, split)
