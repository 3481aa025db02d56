"""Fusions (FUSIONS): a query's kNN result and its verified pairs' inlier counts -> its ranked classes and score.
"calibrated" (default; kit.inference.calibration, else "evidence"), "evidence" (verification only adds to the
kNN result) and "sum" (GLR 2019-2020 winners: sim + weight * min(e, cap) / cap). e = inliers - margin x the most
inliers of the query's other classes: Lowe's ratio test at the level of classes, beyond chance matches."""
from __future__ import annotations

import numpy as np

from kit.errors import KitError
from kit.inference.retrieval import knn_vote
from kit.registry import Registry

FUSIONS = Registry("fusion", dict.fromkeys(("calibrated", "evidence", "sum")))


def class_max(values: np.ndarray, nbr_labels: np.ndarray, classes: np.ndarray, fill) -> np.ndarray:
    """[Q, C]: max of `values` [Q, N] over the candidates of each class in `classes` [Q, C] (fill if none)."""
    hit = (nbr_labels[:, None, :] == classes[:, :, None]) & (classes[:, :, None] >= 0)
    return np.where(hit, values[:, None, :], fill).max(axis=2, initial=fill)


def competing_inliers(inliers: np.ndarray, nbr_labels: np.ndarray) -> np.ndarray:
    """[Q, N] per candidate: the most inliers among the same query's candidates of another class (0 if none),
    how many this query gets by chance; from each query's two classes with the most inliers."""
    nbr_labels = np.asarray(nbr_labels)
    inliers = np.where(nbr_labels >= 0, np.asarray(inliers), 0)
    top, most = knn_vote(inliers, nbr_labels, 2, power=1.0, agg="max")
    out = np.where(nbr_labels == top[:, :1], most[:, 1:2], most[:, :1])
    return np.where(nbr_labels >= 0, out, 0).astype(inliers.dtype)


def class_scores(sims: np.ndarray, inliers: np.ndarray, nbr_labels: np.ndarray, weight: float, cap: float,
                 topk: int, min_inliers: int = 0, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes ranked by max over their neighbours [Q, N] of sim + weight * min(e, cap) / cap (e = inliers -
    margin * `competing_inliers`, >= 0); unverified classes (< `min_inliers`) score their best similarity.
    -> (labels [Q, topk], scores [Q, topk], each listed class's most raw inliers [Q, topk])."""
    if cap <= 0:
        raise KitError(f"rerank: cap={cap} (must be > 0)")
    if margin < 0:
        raise KitError(f"rerank: margin={margin} (must be >= 0)")
    sims = np.asarray(sims, np.float64)
    nbr_labels = np.asarray(nbr_labels)
    inliers = np.where(nbr_labels >= 0, np.asarray(inliers), 0)
    e = inliers - margin * competing_inliers(inliers, nbr_labels) if margin else inliers
    labels, scores = knn_vote(sims + weight * np.minimum(np.maximum(e, 0), cap) / cap, nbr_labels, topk,
                              power=1.0, agg="max")
    raw = class_max(inliers, nbr_labels, labels, 0)
    best_sim = class_max(sims, nbr_labels, labels, -np.inf)
    scores = np.where((raw < min_inliers) & (labels >= 0), best_sim, scores).astype(np.float32)
    return labels, scores, raw.astype(np.int32)


def evidence_fusion(base_labels: np.ndarray, base_scores: np.ndarray, sims: np.ndarray, inliers: np.ndarray,
                    nbr_labels: np.ndarray, weight: float, cap: float, min_inliers: int, margin: float,
                    switch_margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Verification as evidence added to a kNN result (base_labels/scores [Q, topk]): a verified kNN class
    (>= `min_inliers`) gains weight * min(E, cap) / cap, E = its inliers - margin x the best other class's; a
    verified other class with E >= `switch_margin` moves first with that lift; other rows stay as they are.
    -> (labels, scores [Q, topk], raw inliers of each row's first class [Q], switched [Q] bool)."""
    if cap <= 0:
        raise KitError(f"rerank: cap={cap} (must be > 0)")
    labels = np.array(base_labels, np.int64, copy=True)
    scores = np.array(base_scores, np.float64, copy=True)
    nbr_labels = np.asarray(nbr_labels)
    q = len(labels)
    if q == 0 or labels.shape[1] == 0:
        return labels, scores.astype(np.float32), np.zeros(q, np.int32), np.zeros(q, bool)
    inl = np.where(nbr_labels >= 0, np.asarray(inliers), 0)
    # every candidate class's most inliers, [Q, C] over the classes present in the candidates
    width = max(1, nbr_labels.shape[1])
    cls, most = knn_vote(inl.astype(np.float64), nbr_labels, width, power=1.0, agg="max")
    most = np.where(cls >= 0, most, 0.0)
    first = labels[:, 0]
    base_raw = np.where(cls == first[:, None], most, 0.0).max(axis=1)
    best_other = np.where((cls != first[:, None]) & (cls >= 0), most, 0.0).max(axis=1)
    v, v_raw = cls[:, 0], most[:, 0]        # the class with the most inliers and its count
    second = most[:, 1] if most.shape[1] > 1 else np.zeros(q)
    lift = lambda e: weight * np.minimum(np.maximum(e, 0.0), cap) / cap   # noqa: E731
    agree = (first >= 0) & (base_raw >= min_inliers)
    e_base = base_raw - margin * best_other
    switch = ((v >= 0) & (v != first) & (v_raw >= min_inliers) & (v_raw - margin * second >= switch_margin)
              & (v_raw > base_raw))
    knn_top = scores[:, 0].copy()
    scores[:, 0] = np.where(agree & ~switch, knn_top + lift(e_base), knn_top)
    for i in np.flatnonzero(switch):
        rest = [(c, s) for c, s in zip(labels[i], scores[i]) if c != v[i] and c >= 0]
        new = [(int(v[i]), knn_top[i] + lift(v_raw[i] - margin * second[i]))] + rest
        new = (new + [(-1, 0.0)] * labels.shape[1])[:labels.shape[1]]
        labels[i] = [c for c, _ in new]
        scores[i] = [s for _, s in new]
    return labels, scores.astype(np.float32), np.where(switch, v_raw, base_raw).astype(np.int32), switch


def unverified_penalty(scores: np.ndarray, labels: np.ndarray, top_inliers: np.ndarray, reference: np.ndarray,
                       min_inliers: int, weight: float) -> np.ndarray:
    """Scores less `weight * reference` (GLR 2020's similarity to mostly non-landmark photos) on the rows whose
    predicted class is not verified (top_inliers < min_inliers): distinctive photos rank above typical ones."""
    fail = (np.asarray(top_inliers) < min_inliers)[:, None] & (labels >= 0)
    return np.where(fail, scores - weight * np.asarray(reference, np.float64)[:, None], scores).astype(np.float32)
