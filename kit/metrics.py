"""Competition metrics: GAP exactly as Kaggle's GLR scores it (micro-AP over one (label, score) per image,
ties by id then label as tensorflow/models delf does, divided by the images with a landmark), accuracy and the
Mail.ru offline test. `gap_reference` is the plain-Python definition the vectorised versions are tested against."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kit.errors import KitError
from kit.ids import first_duplicate


def _ranked(scores: np.ndarray, id_key: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Order of predictions: score descending, ties by id, then label (only tied rows get the slower string sort)."""
    neg = -scores
    order = np.argsort(neg, kind="stable")
    s = neg[order]
    tie = np.zeros(len(s), dtype=bool)
    if len(s) > 1:
        eq = s[1:] == s[:-1]
        tie[1:] |= eq
        tie[:-1] |= eq
    if tie.any():
        pos = np.flatnonzero(tie)  # tied rows form contiguous score blocks, in score order
        rows = order[pos]
        keys = id_key[rows]
        if keys.dtype == object:  # fixed-width strings sort in C; ASCII bytes sort fastest, same order
            try:
                keys = keys.astype("S")
            except UnicodeEncodeError:
                keys = keys.astype(str)
        o = np.argsort(labels[rows], kind="stable")  # = np.lexsort((labels, keys, neg)), ~30% faster
        o = o[np.argsort(keys[o], kind="stable")]
        o = o[np.argsort(neg[rows][o], kind="stable")]
        order[pos] = rows[o]
    return order


def _gap(label, score, id_key, correct, n_positives: int, what: str = "scores") -> float:
    """Precision at the rank of each correct prediction (label >= 0; in `_ranked` order), summed, divided by M."""
    has = label >= 0
    score = score[has]
    if not np.all(np.isfinite(score)):
        bad = int(np.flatnonzero(~np.isfinite(score))[0])
        raise KitError(f"{what}: non-finite score at index {bad} ({score[bad]})")
    if n_positives == 0:
        return 0.0  # no landmark image in the ground truth: GAP undefined, reported as 0
    c = correct[has][_ranked(score, id_key[has], label[has])]
    hits = np.cumsum(c)
    return float(np.sum(hits[c] / (np.flatnonzero(c) + 1)) / n_positives)


def gap(pred_labels, pred_scores, true_labels, ids=None) -> float:
    """GAP of aligned arrays (pred -1 = none, true -1 = non-landmark); `ids` break score ties, else row order."""
    pred = np.asarray(pred_labels, dtype=np.int64).ravel()
    score = np.asarray(pred_scores, dtype=np.float64).ravel()
    true = np.asarray(true_labels, dtype=np.int64).ravel()
    if not (len(pred) == len(score) == len(true)):
        raise KitError(f"gap: arrays differ in length ({len(pred)}, {len(score)}, {len(true)})")
    id_key = np.arange(len(pred)) if ids is None else np.asarray(ids).ravel()
    if len(id_key) != len(pred):
        raise KitError(f"gap: ids has {len(id_key)} rows, predictions {len(pred)}")
    return _gap(pred, score, id_key, (pred == true) & (true >= 0), int(np.sum(true >= 0)))


def index_in(values, keys) -> np.ndarray:
    """Row in `keys` of each value (first match, -1 = absent): pyarrow's hash lookup, pandas without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return _index_in_pandas(values, keys)

    def arrow(ids):  # a Series' Arrow strings as they are; anything else through Python strings
        arr = pa.array(ids.array) if isinstance(ids, pd.Series) else pa.array(np.asarray(ids, dtype=object))
        return (arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr).cast(pa.string())

    return pc.index_in(arrow(values), value_set=arrow(keys)).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _index_in_pandas(values, keys) -> np.ndarray:
    """index_in with pandas only: the first row of each distinct key, then get_indexer."""
    keys = pd.Index(np.asarray(keys, dtype=object).ravel())
    first = ~keys.duplicated(keep="first")
    pos = keys[first].get_indexer(pd.Index(np.asarray(values, dtype=object).ravel()))
    return np.where(pos >= 0, np.flatnonzero(first)[pos], -1).astype(np.int64)


def _align(sol_ids: np.ndarray, sub_ids: np.ndarray) -> np.ndarray:
    """Row of each submission id in the solution (-1 = absent); solution ids must be unique."""
    d = first_duplicate(sol_ids)
    if d >= 0:
        raise KitError(f"solution: duplicate id {sol_ids[d]}")
    if len(sub_ids) == len(sol_ids) and np.array_equal(sub_ids, sol_ids):
        return np.arange(len(sol_ids))  # the usual case: submission written in solution order
    return index_in(sub_ids, sol_ids)


class Matcher:
    """The solution side of `match_frames` prepared once for fixed submission ids (ensemble weight fitting)."""

    def __init__(self, sol_df: pd.DataFrame, sub_ids):
        keep = (sol_df["usage"].astype(str).str.lower().to_numpy() != "ignored" if "usage" in sol_df.columns
                else np.ones(len(sol_df), dtype=bool))  # 'Ignored' rows dropped, as the official scorer does
        sol_ids = sol_df["id"].astype(str).to_numpy(dtype=object)
        ignored, sol_ids = sol_ids[~keep], sol_ids[keep]
        landmarks = sol_df["landmarks"].to_numpy()[keep]
        sub_ids = pd.Series(sub_ids).astype(str).to_numpy(dtype=object)
        self.sub_keep = index_in(sub_ids, ignored) < 0 if len(ignored) else None
        if self.sub_keep is not None:
            sub_ids = sub_ids[self.sub_keep]
        pos = _align(sol_ids, sub_ids)
        if (pos < 0).any():
            raise KitError(f"submission: {int((pos < 0).sum())} id(s) not in the solution (first: {sub_ids[pos < 0][0]})")
        if len(pos) and np.bincount(pos).max() > 1:
            raise KitError(f"submission: duplicate id {sub_ids[first_duplicate(sub_ids)]}")
        self.pos, self.sol_ids, n = pos, sol_ids, len(sol_ids)
        # explode the ground truth to (row, landmark) pairs; a row is correct if its label is one of them
        pairs = pd.Series(landmarks, index=np.arange(n), dtype=object).explode().dropna()
        self.rows = pairs.index.to_numpy(dtype=np.int64)
        self.truth = pairs.to_numpy(dtype=np.int64)
        self.is_landmark = np.bincount(self.rows, minlength=n) > 0

    def __call__(self, label_in, score_in) -> dict:
        label_in = np.asarray(label_in, dtype=np.int64)
        score_in = np.asarray(score_in, dtype=np.float64)
        if self.sub_keep is not None:
            label_in, score_in = label_in[self.sub_keep], score_in[self.sub_keep]
        n = len(self.sol_ids)
        label = np.full(n, -1, dtype=np.int64)
        score = np.zeros(n, dtype=np.float64)
        label[self.pos], score[self.pos] = label_in, score_in
        hit = label[self.rows] == self.truth
        correct = np.zeros(n, dtype=bool)
        correct[self.rows[hit]] = True
        return {"id": self.sol_ids, "label": label, "score": score, "correct": correct,
                "is_landmark": self.is_landmark}

    def gap(self, label_in, score_in) -> float:
        """GAP of the submission's labels and scores (in the order of its ids) against the solution."""
        m = self(label_in, score_in)
        return _gap(m["label"], m["score"], m["id"], m["correct"], int(m["is_landmark"].sum()), "submission scores")


def match_frames(sub_df: pd.DataFrame, sol_df: pd.DataFrame) -> pd.DataFrame:
    """Align a submission (id, label, score; label -1 = empty) to a solution (id, landmarks: list[int]) -> one row per
    solution id: id, label, score, correct, is_landmark; 'Ignored' usage rows dropped as the official scorer does."""
    return pd.DataFrame(Matcher(sol_df, sub_df["id"])(sub_df["label"].to_numpy(dtype=np.int64),
                                                      sub_df["score"].to_numpy(dtype=np.float64)))


def gap_frames(sub_df: pd.DataFrame, sol_df: pd.DataFrame) -> float:
    """GAP of a submission frame (id, label, score) against a solution frame (id, landmarks list[int])."""
    return Matcher(sol_df, sub_df["id"]).gap(sub_df["label"].to_numpy(dtype=np.int64),
                                             sub_df["score"].to_numpy(dtype=np.float64))


def gap_reference(predictions: dict, solution: dict) -> float:
    """GAP line by line from the definition (slow): predictions {id: (label, score)}, solution {id: [landmarks]}."""
    items = [(i, lab, sc) for i, (lab, sc) in predictions.items() if lab != -1]
    items.sort(key=lambda x: (-x[2], x[0], x[1]))
    total = correct = 0
    ap = 0.0
    for i, lab, _ in items:
        total += 1
        if lab in solution[i]:
            correct += 1
            ap += correct / total
    m = sum(1 for v in solution.values() if len(v) > 0)
    return ap / m if m else 0.0


def accuracy(pred_labels, true_labels) -> float:
    """Share of rows whose top-1 label equals the true label (pass landmark images only for GLR's top-1 accuracy)."""
    pred, true = np.asarray(pred_labels).ravel(), np.asarray(true_labels).ravel()
    return float(np.mean(pred == true)) if len(true) else 0.0


def sensitivity_specificity(pred_is_landmark, true_is_landmark) -> tuple[float, float]:
    """Mail.ru test: share of landmark images kept, share of non-landmarks rejected (0.0 for an empty group)."""
    p = np.asarray(pred_is_landmark, dtype=bool).ravel()
    t = np.asarray(true_is_landmark, dtype=bool).ravel()
    sens = float(np.mean(p[t])) if t.any() else 0.0
    spec = float(np.mean(~p[~t])) if (~t).any() else 0.0
    return sens, spec

