"""The prediction file passed from train / predict to ensemble, filter and submit: a `.npz` (no pickle) of
ids str [N], labels int64 [N, k] (top-k original landmark ids, -1 = none), scores f32 [N, k] (descending)
and optionally embeddings f32 [N, D] (L2-normalised)."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.atomic import atomic_path
from kit.errors import KitError
from kit.ids import first_duplicate, safe_ids


@dataclass
class Predictions:
    ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray | None = None

    def __post_init__(self):
        self.ids = np.asarray(self.ids).astype(str)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(len(self.ids), -1)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(len(self.ids), -1)
        if self.labels.shape != self.scores.shape:
            raise KitError(f"predictions: labels {self.labels.shape} and scores {self.scores.shape} differ in shape")
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
            if len(self.embeddings) != len(self.ids):
                raise KitError("predictions: embeddings and ids differ in length")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def top1(self) -> tuple[np.ndarray, np.ndarray]:
        """(label, score) of the best prediction per id; label -1 = none."""
        return self.labels[:, 0], self.scores[:, 0]

    def subset(self, index) -> "Predictions":
        emb = None if self.embeddings is None else self.embeddings[index]
        return Predictions(self.ids[index], self.labels[index], self.scores[index], emb)

    def reindex(self, ids) -> "Predictions":
        """Rows in the order of `ids`; ids absent here get an empty prediction (never dropped)."""
        ids = np.asarray(ids).astype(str)
        import pandas as pd

        idx = pd.Index(self.ids).get_indexer(ids).astype(np.int64)  # vectorised; -1 = absent
        have = idx >= 0

        def take(a, fill):  # a's rows of the ids here, `fill` for the others
            if a is None:
                return None
            out = np.full((len(ids), a.shape[1]), fill, a.dtype)
            out[have] = a[idx[have]]
            return out
        return Predictions(ids, take(self.labels, -1), take(self.scores, 0), take(self.embeddings, 0))


def concat(preds: list[Predictions], k: int | None = None) -> Predictions:
    """Prediction sets stacked, their first `k` columns (default: narrowest); embeddings kept when all have them."""
    k = min(p.labels.shape[1] for p in preds) if k is None else k
    emb = [p.embeddings for p in preds]
    return Predictions(np.concatenate([p.ids for p in preds]), np.concatenate([p.labels[:, :k] for p in preds]),
                       np.concatenate([p.scores[:, :k] for p in preds]),
                       None if any(e is None for e in emb) else np.concatenate(emb))


def save_predictions(pred: Predictions, path: str | Path) -> Path:
    """Write atomically as .npz (see module docstring)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: v for k, v in vars(pred).items() if v is not None})   # ids, labels, scores[, embeddings]
    return path


def load_predictions(path: str | Path) -> Predictions:
    """Read and check a prediction file; every problem is a KitError naming this file (and the row)."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path}: prediction file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise KitError(f"{path}: not a kit prediction file (a single array, not an .npz archive)")
            missing = [k for k in ("ids", "labels", "scores") if k not in z.files]
            if missing:
                raise KitError(f"{path}: not a kit prediction file (missing {', '.join(missing)})")
            arrays = {k: z[k] for k in ("ids", "labels", "scores", "embeddings") if k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        lines = str(e).strip().splitlines()
        raise KitError(f"{path}: cannot read prediction file ({type(e).__name__}: "
                       f"{lines[0] if lines else 'truncated or corrupt'})") from None
    check_arrays(path, arrays)
    try:
        return Predictions(arrays["ids"], arrays["labels"], arrays["scores"], arrays.get("embeddings"))
    except (KitError, ValueError) as e:
        raise KitError(f"{path}: {e}") from None


def check_arrays(path, a: dict) -> None:
    """Shapes, dtypes, finite scores and unique, non-blank, safe ids of a prediction file's arrays."""
    ids, labels, scores, emb = a["ids"], a["labels"], a["scores"], a.get("embeddings")
    if ids.ndim != 1 or ids.dtype.kind not in "US":
        raise KitError(f"{path}: 'ids' must be a 1-D string array (got {ids.dtype} {ids.shape})")
    n = len(ids)
    for name, arr, kinds in (("labels", labels, "iu"), ("scores", scores, "fiu")):
        if arr.dtype.kind not in kinds or arr.ndim not in (1, 2) or len(arr) != n:
            raise KitError(f"{path}: '{name}' must be [N, k] numbers for the {n} ids (got {arr.dtype} {arr.shape})")
    if labels.shape != scores.shape:
        raise KitError(f"{path}: labels {labels.shape} and scores {scores.shape} differ in shape")
    if emb is not None and (emb.ndim != 2 or len(emb) != n or emb.dtype.kind != "f"):
        raise KitError(f"{path}: 'embeddings' must be float [N, D] for the {n} ids (got {emb.dtype} {emb.shape})")
    ids = ids.astype(str)
    bad = np.flatnonzero(~safe_ids(ids))
    if len(bad):
        i = int(bad[0])
        raise KitError(f"{path}: row {i + 1}: id {ids[i][:80]!r} is blank, padded or not a safe file name")
    d = first_duplicate(ids)
    if d >= 0:
        first = int(np.flatnonzero(ids == ids[d])[0])
        raise KitError(f"{path}: row {d + 1}: duplicate id {ids[d]} (first at row {first + 1})")
    bad = ~np.isfinite(scores.astype(np.float64))
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(n, -1).any(axis=1))[0])
        raise KitError(f"{path}: row {i + 1}: non-finite score ({scores.reshape(n, -1)[i].tolist()})")
    if labels.size and labels.min() < -1:
        i = int(np.flatnonzero((labels.reshape(n, -1) < -1).any(axis=1))[0])
        raise KitError(f"{path}: row {i + 1}: landmark id below -1 ({labels.reshape(n, -1)[i].tolist()})")
    if emb is not None and not np.isfinite(emb).all():
        i = int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0])
        raise KitError(f"{path}: row {i + 1}: non-finite embedding")


def group_rows(labels: np.ndarray):
    """Present (row, label) pairs of labels [N, K] grouped by (row, label) -> (kept, group of each, group rows, labels)."""
    n, k = labels.shape
    flat = labels.ravel()
    keep = np.flatnonzero(flat >= 0)
    rows, lab = keep // max(k, 1), flat[keep]
    order = np.lexsort((lab, rows))  # stable: equal (row, label) keep column order
    keep, rows, lab = keep[order], rows[order], lab[order]
    new = np.ones(len(keep), bool)
    new[1:] = (rows[1:] != rows[:-1]) | (lab[1:] != lab[:-1])
    return keep, np.cumsum(new) - 1, rows[new], lab[new]


def top_per_row(totals: np.ndarray, g_rows: np.ndarray, g_labels: np.ndarray, n: int, topk: int):
    """Per row the `topk` labels with the highest group totals (ties: smaller label) -> labels [n, topk], scores."""
    order = np.lexsort((g_labels, -totals, g_rows))
    return first_per_row(g_rows[order], g_labels[order], totals[order], n, topk)


def first_per_row(rows: np.ndarray, labels: np.ndarray, scores: np.ndarray, n: int, topk: int):
    """The first `topk` (label, score) entries of each of `n` rows (entries sorted by row) -> [n, topk] each."""
    rank = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n))[rows]
    top = rank < topk
    out_labels = np.full((n, topk), -1, np.int64)
    out_scores = np.zeros((n, topk), np.float32)
    out_labels[rows[top], rank[top]] = labels[top]
    out_scores[rows[top], rank[top]] = scores[top]
    return out_labels, out_scores
