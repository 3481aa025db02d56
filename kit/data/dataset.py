"""Images of one fold as torch DataLoaders: the folds CSV + GLDv2 image layout -> (image, label, id).

Data order and augmentation are functions of (seed, epoch, index) only: the sampler is a
DistributedSampler seeded with cfg.seed (one replica when not distributed) and each sample's
albumentations random state is derived from (seed, epoch, index). So a resumed run, a run with a
different number of workers and a DDP run all see the same batches as an uninterrupted run.
Missing images are found up front (one directory walk) and dropped with a count; unreadable,
truncated or oversized ones (kit.images.decode_image) are found at decode time, dropped in `collate` and
counted (batch["skipped"] lists their ids). With `strict` both raise a one-line KitError naming the
file instead, also from DataLoader workers (kit.errors.KitError drops the worker's traceback).
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit.errors import KitError
from kit.csvfiles import read_csv
from kit.ids import clean_ids
from kit.images import MAX_PIXELS, decode_image
from kit.layout import image_path

log = logging.getLogger("kit.data.dataset")
FOLD_COLUMNS = ("id", "landmark_id", "label", "fold")
SHOW_PATHS = 5


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


def existing_ids(data_dir: str | os.PathLike, split: str = "train") -> set[str]:
    """Ids of all .jpg files under DATA/SPLIT (one os.walk, much cheaper than a stat per row)."""
    root = Path(data_dir) / split
    if not root.is_dir():
        raise KitError(f"{root}: image directory not found")
    found = set()
    for _, _, files in os.walk(root):
        found.update(f[:-4] for f in files if f.endswith(".jpg"))
    return found


def drop_missing(df: pd.DataFrame, data_dir, strict: bool, split: str = "train") -> tuple[pd.DataFrame, int]:
    """Drop rows whose image file is absent; log the count and the first few paths (KitError if strict)."""
    have = existing_ids(data_dir, split)
    missing = ~df["id"].isin(have)
    n = int(missing.sum())
    if n:
        paths = [str(image_path(data_dir, split, i)) for i in df.loc[missing, "id"].head(SHOW_PATHS)]
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
    """Map-style dataset over rows (id, label); item = dict(image, label, id) or None if undecodable.

    `epoch` is set by the training loop before each epoch; with `seed` it fixes each sample's
    augmentation, so results do not depend on workers, resumes or DDP ranks. With `image_size` a large
    JPEG is decoded at a reduced scale that keeps its shorter side >= 2 x image_size (crops keep detail).
    """

    def __init__(self, df: pd.DataFrame, data_dir, transform, split: str = "train", seed: int = 0,
                 strict: bool = False, max_pixels: int = MAX_PIXELS, image_size: int = 0):
        self.ids = df["id"].astype(str).tolist()
        self.labels = df["label"].astype(int).tolist() if "label" in df else [-1] * len(df)
        self.data_dir, self.split, self.transform = data_dir, split, transform
        self.seed, self.epoch, self.strict, self.max_pixels = seed, 0, strict, max_pixels
        self.min_side = 2 * int(image_size)

    @classmethod
    def from_config(cls, df: pd.DataFrame, cfg, train: bool, split: str = "train") -> "LandmarkDataset":
        """The dataset of `df` as the config says: cfg.data's transform (training or eval form), folder,
        strictness, pixel cap and image size (decode scale), and cfg.seed."""
        from kit.data.augment import transforms_for

        d = cfg.data
        return cls(df, d.data_dir, transforms_for(cfg, train), split=split, seed=cfg.seed, strict=d.strict,
                   max_pixels=d.max_pixels, image_size=d.image_size)

    def __len__(self) -> int:
        return len(self.ids)

    def _seed_transform(self, index: int) -> None:
        if hasattr(self.transform, "set_random_state"):
            ss = np.random.SeedSequence([self.seed, self.epoch, index])
            self.transform.set_random_state(np.random.default_rng(ss), random.Random(int(ss.generate_state(1)[0])))

    def __getitem__(self, index: int):
        path = image_path(self.data_dir, self.split, self.ids[index])
        img = decode_image(path, self.max_pixels, strict=self.strict, min_side=self.min_side)  # strict: KitError
        if img is None:
            log.warning("skipping unreadable image %s", path)
            return {"skipped": self.ids[index]}
        self._seed_transform(index)
        return {"image": self.transform(image=img)["image"], "label": self.labels[index], "id": self.ids[index]}


def collate(items):
    """default_collate over the decodable items, plus "skipped": ids of the undecodable ones.
    A batch of only undecodable images is {"skipped": [...]} (no "image": see `has_images`)."""
    from torch.utils.data import default_collate

    skipped = [x["skipped"] for x in items if x is not None and "skipped" in x]
    good = [x for x in items if x is not None and "skipped" not in x]
    batch = default_collate(good) if good else {}
    batch["skipped"] = skipped
    return batch


def has_images(batch) -> bool:
    """False for a batch whose images were all undecodable (or None from an older collate)."""
    return batch is not None and "image" in batch


def _worker_init(_):
    # No cv2.setNumThreads here: in a forked worker it deadlocks when the parent has used OpenCV's
    # thread pool (kit.cli sets OpenCV to 0 threads at start, which workers inherit).
    import torch

    torch.set_num_threads(1)


def make_loader(dataset, batch_size: int, train: bool, seed: int, num_workers: int, device_type: str,
                world_size: int = 1, rank: int = 0):
    """A DataLoader whose order is a function of (seed, epoch): DistributedSampler even for one process.

    Validation loaders are unshuffled and sharded without padding (rank r gets rows r, r+W, ...).
    """
    from torch.utils.data import DataLoader, DistributedSampler

    drop_last = train and len(dataset) >= batch_size * world_size
    if train:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                     drop_last=drop_last)
    else:  # every image exactly once over all ranks (DistributedSampler would pad with repeats)
        sampler = range(rank, len(dataset), world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate, pin_memory=device_type == "cuda", drop_last=drop_last,
                      worker_init_fn=_worker_init if num_workers > 0 else None,
                      persistent_workers=False)


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


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """cfg.data.batch_size is the global batch: split evenly over DDP ranks."""
    if batch_size % world_size:
        raise KitError(f"data.batch_size={batch_size} is not divisible by the {world_size} DDP processes")
    return batch_size // world_size


def make_loaders(cfg, fold: int, world_size: int = 1, rank: int = 0, device_type: str = "cpu",
                 split: FoldSplit | None = None) -> Loaders:
    """Train/val DataLoaders of fold N (val sharded over ranks under DDP, unshuffled)."""
    split = split or split_fold(cfg, fold)
    d = cfg.data
    bs = per_rank_batch(d.batch_size, world_size)
    train_ds = LandmarkDataset.from_config(split.train, cfg, train=True)
    val_ds = LandmarkDataset.from_config(split.val, cfg, train=False)
    return Loaders(make_loader(train_ds, bs, True, cfg.seed, d.num_workers, device_type, world_size, rank),
                   make_loader(val_ds, bs, False, cfg.seed, d.num_workers, device_type, world_size, rank),
                   split)
