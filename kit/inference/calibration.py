"""Calibrated fusion: a logistic model of P(candidate class is right), fitted on the validation queries from
each candidate class's kNN and verification evidence (`FEATURES`), ranks a query's classes and is its confidence.
Validation scores are cross-fitted (each half by the other half's model), so a pick on validation does not favour
the calibrated row; too small a validation set gives None and the caller keeps the evidence fusion."""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np

from kit.errors import KitError
from kit.inference.fusion import class_max

FEATURES = ("similarity", "similarity_margin", "log_inliers", "inlier_margin", "is_knn_class", "verified",
            "reference")


@dataclass
class Calibration:
    """A fitted logistic model over `FEATURES` (standardised with mean/scale)."""
    mean: list
    scale: list
    coef: list
    intercept: float
    min_inliers: int
    examples: int = 0      # candidates it was fitted on
    positives: int = 0     # right candidates among them

    def probability(self, feats: np.ndarray) -> np.ndarray:
        z = (np.asarray(feats, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        if list(d.get("features", [])) != list(FEATURES):
            raise KitError(f"calibration: features {d.get('features')} (this kit uses {list(FEATURES)})")
        return cls(**{k: v for k, v in d.items() if k != "features"})


def _best_other(values: np.ndarray, classes: np.ndarray, fill: float) -> np.ndarray:
    """[Q, C]: the highest value of the other candidate classes of the same query (fill if none)."""
    v = np.where(classes >= 0, values, fill)
    s = np.sort(v, axis=1)   # the best other is the row's best, or its second best where this is the best
    second = s[:, -2:-1] if v.shape[1] > 1 else np.full((len(v), 1), fill)
    return np.maximum(np.where(v == s[:, -1:], second, s[:, -1:]), fill)


def candidate_features(base_labels: np.ndarray, sims: np.ndarray, inliers: np.ndarray, nbr_labels: np.ndarray,
                       min_inliers: int, reference=None, width: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Each query's candidate classes (kNN classes first, then classes with inliers, -1 = none) [Q, width] and
    their `FEATURES` [Q, width, F] from sims, inliers, nbr_labels [Q, N] (label -1 = none) and reference [Q]:
    GLR 2020's non-landmark signal (None: 0)."""
    base = np.asarray(base_labels, np.int64)
    nbr_labels = np.asarray(nbr_labels, np.int64)
    sims = np.where(nbr_labels >= 0, np.asarray(sims, np.float64), -1.0)
    inl = np.where(nbr_labels >= 0, np.asarray(inliers, np.float64), 0.0)
    classes = np.full((len(base), width), -1, np.int64)
    for q in range(len(base)):
        seen = [int(c) for c in base[q] if c >= 0]
        order = np.argsort(-inl[q], kind="stable")
        seen += [int(nbr_labels[q, n]) for n in order if inl[q, n] > 0 and nbr_labels[q, n] >= 0]
        uniq = list(dict.fromkeys(seen))[:width]
        classes[q, :len(uniq)] = uniq
    sim = class_max(sims, nbr_labels, classes, -1.0)
    most = class_max(inl, nbr_labels, classes, 0.0)
    margin = most - _best_other(most, classes, 0.0)
    ref = np.zeros(len(base)) if reference is None else np.asarray(reference, np.float64)
    feats = np.stack([sim, sim - _best_other(sim, classes, -1.0), np.log1p(most),
                      np.sign(margin) * np.log1p(np.abs(margin)), (classes == base[:, :1]).astype(np.float64),
                      (most >= min_inliers).astype(np.float64),
                      np.broadcast_to(ref[:, None], sim.shape)], axis=2)
    return classes, feats


def fit_calibration(feats: np.ndarray, classes: np.ndarray, truth: np.ndarray, min_inliers: int,
                    min_examples: int = 20, c: float = 1.0) -> Calibration | None:
    """Logistic regression (L2, C=`c`) of "candidate class == the query's landmark (truth [Q], -1 = none)";
    None when fewer than `min_examples` right candidates or non-landmark queries."""
    from sklearn.linear_model import LogisticRegression

    truth = np.asarray(truth, np.int64)
    valid = classes >= 0
    y = (classes == truth[:, None]) & valid
    if y.sum() < min_examples or (truth < 0).sum() < min_examples:
        return None
    x, t = feats[valid], y[valid]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    model = LogisticRegression(C=c, max_iter=1000).fit((x - mean) / scale, t)
    return Calibration(mean.tolist(), scale.tolist(), model.coef_[0].tolist(), float(model.intercept_[0]),
                       int(min_inliers), int(len(t)), int(t.sum()))


def calibrated_ranking(model: Calibration, classes: np.ndarray, feats: np.ndarray,
                       topk: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate classes ranked by the model's P(right) -> (labels [Q, topk], scores [Q, topk], -1 / 0 padded)."""
    p = np.where(classes >= 0, model.probability(feats), -1.0)
    # only a verified class may take the kNN class's place (when its P is higher): an unverified class's
    # P rests on similarity alone, which the kNN order already measured
    first = np.asarray(feats[..., FEATURES.index("is_knn_class")] > 0) | (feats[..., FEATURES.index("verified")] > 0)
    order = np.argsort(-np.where(first & (classes >= 0), p + 2.0, p), axis=1, kind="stable")[:, :topk]
    labels = np.take_along_axis(classes, order, 1)
    scores = np.take_along_axis(p, order, 1)
    pad = max(0, topk - labels.shape[1])
    labels = np.pad(labels, ((0, 0), (0, pad)), constant_values=-1)
    scores = np.pad(scores, ((0, 0), (0, pad)))
    return labels, np.where(labels >= 0, scores, 0.0).astype(np.float32)


def halves(ids) -> np.ndarray:
    """0/1 per id from a checksum of the id: a split of the validation queries that does not depend on order."""
    return np.array([zlib.crc32(str(i).encode()) & 1 for i in ids], np.int64)


def cross_fitted_ranking(feats: np.ndarray, classes: np.ndarray, truth: np.ndarray, ids, min_inliers: int,
                         topk: int, min_examples: int = 20):
    """Validation rankings where each half of the queries is ranked by the model fitted on the other half
    -> (labels, scores), or None when a half is too small to fit."""
    half = halves(ids)
    labels = np.full((len(classes), topk), -1, np.int64)
    scores = np.zeros((len(classes), topk), np.float32)
    for h in (0, 1):
        fit, use = half != h, half == h
        model = fit_calibration(feats[fit], classes[fit], truth[fit], min_inliers, min_examples // 2)
        if model is None:
            return None
        labels[use], scores[use] = calibrated_ranking(model, classes[use], feats[use], topk)
    return labels, scores
