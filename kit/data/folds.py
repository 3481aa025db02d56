"""Class subsets and stratified folds for GLDv2's train.csv -> folds CSV `id,landmark_id,label,fold`.

Classes: the K most frequent (ties: landmark_id ascending) or all with >= N images; `label` is 0..C-1 in landmark_id
order. Folds are stratified and NESTED: within a class, rows in a seeded hash order get fold (rank + a seeded
per-class offset) mod F, so an image's fold depends only on its own class: the top-2k file's fold 0 is a subset of
the top-18k file's, and models trained on either share one validation fold without leakage. sklearn's
StratifiedKFold neither nests nor scales to 18k classes (bench/gap_folds.py). `--holdout` is report 001's 90/6/4
split: the same order walks a 50-slot pattern of 45 train (fold 1), 3 val (fold 0) and 2 holdout (fold -1) slots."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kit.atomic import atomic_path
from kit.data.train_csv import read_clean, read_train, restrict_to_clean
from kit.errors import KitError

HOLDOUT_SHARES = {1: 45, 0: 3, -1: 2}  # per 50 images: train / val / holdout (report 001: 90/6/4)
COLUMNS = ["id", "landmark_id", "label", "fold"]


def folds_from_csv(train_csv, clean_csv=None, top: int | None = None, min_images: int | None = None,
                   n_folds: int = 5, holdout: bool = False, seed: int = 0) -> tuple[pd.DataFrame, int]:
    """`kit folds`: train.csv (+ GLDv2-clean CSV) -> (folds frame, rows of train.csv)."""
    train = read_train(train_csv)
    kept = restrict_to_clean(train, read_clean(clean_csv), clean_csv) if clean_csv else train
    return make_folds(kept, top, min_images, n_folds, holdout, seed), len(train)


def select_classes(landmark_ids: np.ndarray, top: int | None = None, min_images: int | None = None) -> np.ndarray:
    """Kept landmark ids (ascending): the `top` most frequent (ties: landmark_id ascending) or all with >= min_images."""
    if (top is None) == (min_images is None):
        raise KitError("folds: give exactly one of --top K or --min-images N")
    if top is not None and top <= 0:
        raise KitError(f"folds: --top must be > 0 (got {top})")
    if min_images is not None and min_images <= 0:
        raise KitError(f"folds: --min-images must be > 0 (got {min_images})")
    per_class = pd.Series(np.asarray(landmark_ids)).value_counts(sort=False).sort_index()
    uniq, counts = per_class.index.to_numpy(), per_class.to_numpy()
    if top is not None:
        return np.sort(uniq[np.lexsort((uniq, -counts))[:top]])
    return uniq[counts >= min_images]


def seeded_hash(values, seed: int) -> np.ndarray:
    """A uint64 hash of each value (string ids or integers) and the seed: pandas' hash of the pair."""
    return pd.util.hash_pandas_object(pd.DataFrame({"value": values, "seed": seed}), index=False,
                                      categorize=False).to_numpy()


def _class_cycle_positions(labels: np.ndarray, cycle: int, seed: int, ids=None, landmark_ids=None) -> np.ndarray:
    """Per row: (its rank within its class, in a seeded order by id hash, plus a seeded per-class offset) mod
    `cycle`. Depends only on (seed, the row's class, the ids of that class), not on the other classes kept.
    landmark_ids: one per class (default: the labels)."""
    n = len(labels)
    ids = np.arange(n) if ids is None else ids
    keys = labels if landmark_ids is None else np.asarray(landmark_ids)
    order = np.argsort(seeded_hash(ids, seed), kind="stable")  # every row in a seeded order (ties: row order)
    in_order = labels[order]
    rank = np.empty(n, np.int64)
    rank[order] = pd.Series(in_order).groupby(in_order, sort=False).cumcount().to_numpy()  # rows of its class before it
    class_key = np.zeros(int(labels.max()) + 1 if n else 0, keys.dtype)
    class_key[labels] = keys
    offset = (seeded_hash(class_key, seed + 1) % np.uint64(cycle)).astype(np.int64)
    return (rank + offset[labels]) % cycle


def assign_folds(labels: np.ndarray, n_folds: int, seed: int = 0, ids=None, landmark_ids=None) -> np.ndarray:
    """Stratified fold 0..F-1 per row (labels: contiguous class indices). See module docstring."""
    if n_folds < 2:
        raise KitError(f"folds: --n-folds must be >= 2 (got {n_folds})")
    labels = np.asarray(labels, dtype=np.int64)
    return _class_cycle_positions(labels, n_folds, seed, ids, landmark_ids).astype(np.int8)


def holdout_pattern(shares: dict = HOLDOUT_SHARES) -> np.ndarray:
    """Cycle of split codes with the given counts, interleaved by largest-deficit (like Bresenham)."""
    total = sum(shares.values())
    codes = list(shares)
    done = dict.fromkeys(codes, 0)
    out = []
    for step in range(1, total + 1):
        code = max(codes, key=lambda c: shares[c] * step / total - done[c])  # ties: first listed
        done[code] += 1
        out.append(code)
    return np.array(out, dtype=np.int8)


def assign_holdout(labels: np.ndarray, seed: int = 0, ids=None, landmark_ids=None) -> np.ndarray:
    """Report 001's split per row: 1 = train (90%), 0 = val (6%), -1 = holdout (4%), stratified by class."""
    labels = np.asarray(labels, dtype=np.int64)
    pattern = holdout_pattern()
    return pattern[_class_cycle_positions(labels, len(pattern), seed, ids, landmark_ids)]


def make_folds(train: pd.DataFrame, top: int | None = None, min_images: int | None = None,
               n_folds: int = 5, holdout: bool = False, seed: int = 0) -> pd.DataFrame:
    """train (id, landmark_id) -> folds frame id, landmark_id, label, fold (input row order kept)."""
    lid = train["landmark_id"].to_numpy(dtype=np.int64)
    kept = select_classes(lid, top, min_images)
    if len(kept) == 0:
        raise KitError(f"folds: no class has >= {min_images} images")
    label = pd.Index(kept).get_indexer(lid)
    rows = np.flatnonzero(label >= 0)
    ids = train["id"].iloc[rows].reset_index(drop=True)
    label, lid = label[rows], lid[rows]
    fold = assign_holdout(label, seed, ids, lid) if holdout else assign_folds(label, n_folds, seed, ids, lid)
    return pd.DataFrame({"id": ids, "landmark_id": lid, "label": label, "fold": fold})


def write_folds(folds: pd.DataFrame, path) -> None:
    """Write the folds CSV atomically: pyarrow's writer (~7x faster) or, without pyarrow, pandas (same bytes)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        with atomic_path(path) as tmp:
            folds[COLUMNS].to_csv(tmp, index=False)
        return
    table = pa.Table.from_pandas(folds[COLUMNS], preserve_index=False)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write((",".join(COLUMNS) + "\n").encode())
        try:
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        except pa.ArrowInvalid as e:
            raise KitError(f"{path}: cannot write folds (an id needs CSV quoting?): {e}") from None


def fold_summary(folds: pd.DataFrame, n_train_rows: int) -> str:
    """Human summary: classes, images, images per class, rows per fold."""
    per_class = np.bincount(folds["label"].to_numpy())
    per_fold = folds["fold"].value_counts().sort_index()
    fold_txt = ", ".join(f"{v}: {int(c)}" for v, c in per_fold.items())
    return (f"classes kept: {len(per_class)}  images: {len(folds)} of {n_train_rows}\nimages per class: min "
            f"{per_class.min()}  median {int(np.median(per_class))}  max {per_class.max()}\nrows per fold: {fold_txt}")
