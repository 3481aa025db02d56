"""Geometric verification of local features: mutual nearest neighbours + Lowe's ratio test, then the inliers of
one transform (homography or affine) fitted by OpenCV's RANSAC or USAC_MAGSAC: many means the same landmark."""
from __future__ import annotations

import numpy as np

from kit.registry import Registry

TRANSFORMS = Registry("transform", dict.fromkeys(("homography", "affine")))
ROBUST = Registry("robust estimator", dict.fromkeys(("ransac", "magsac")))  # cv2.RANSAC, or cv2.USAC_MAGSAC (homography only; faster, fewer false inliers)


def match_descriptors(d1: np.ndarray, d2: np.ndarray, ratio: float = 0.8, mutual: bool = True) -> np.ndarray:
    """Index pairs [m, 2] (i in d1, j in d2) that pass the ratio test (and are mutual nearest neighbours): the
    pairs of cv2.BFMatcher's knnMatch + match from one BLAS distance matrix, in half the time (1000 RootSIFT)."""
    if len(d1) < 2 or len(d2) < 2:
        return np.zeros((0, 2), np.int64)
    d1 = np.ascontiguousarray(d1, np.float32)
    d2 = np.ascontiguousarray(d2, np.float32)
    dist = (d1 * d1).sum(1)[:, None] + (d2 * d2).sum(1)[None, :] - 2.0 * (d1 @ d2.T)
    np.maximum(dist, 0, out=dist)
    two = np.argpartition(dist, 1, axis=1)[:, :2]
    dd = np.take_along_axis(dist, two, axis=1)  # kth=1: column 0 holds the nearest
    best = two[:, 0]
    ok = np.sqrt(dd[:, 0]) < ratio * np.sqrt(dd[:, 1])
    if mutual:
        ok &= dist.argmin(axis=0)[best] == np.arange(len(d1))
    rows = np.flatnonzero(ok)
    return np.stack([rows, best[rows]], axis=1).astype(np.int64)


def ransac_inliers(pts1: np.ndarray, pts2: np.ndarray, transform: str = "affine",
                   threshold: float = 8.0, max_iters: int = 1000, seed: int = 0, robust: str = "ransac") -> int:
    """Number of point pairs consistent with the best RANSAC `transform` (0 when too few points)."""
    import cv2

    TRANSFORMS.check(transform, "matching: ")
    ROBUST.check(robust, "matching: ")
    need = 4 if transform == "homography" else 3
    if len(pts1) < need:
        return 0
    pts1 = np.ascontiguousarray(pts1, np.float32).reshape(-1, 1, 2)
    pts2 = np.ascontiguousarray(pts2, np.float32).reshape(-1, 1, 2)
    cv2.setRNGSeed(seed)
    if transform == "homography":
        method = cv2.USAC_MAGSAC if robust == "magsac" else cv2.RANSAC
        model, mask = cv2.findHomography(pts1, pts2, method, threshold, maxIters=max_iters)
    else:
        model, mask = cv2.estimateAffine2D(pts1, pts2, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                           maxIters=max_iters)
    return 0 if model is None or mask is None else int(mask.sum())


def count_inliers(f1, f2, ratio: float = 0.8, transform: str = "affine", threshold: float = 8.0,
                  mutual: bool = True, robust: str = "ransac") -> int:
    """RANSAC inliers between two `LocalFeatures` (kit.localfeatures.base): the verification score of a pair."""
    pairs = match_descriptors(f1.descriptors, f2.descriptors, ratio=ratio, mutual=mutual)
    if len(pairs) == 0:
        return 0
    return ransac_inliers(f1.keypoints[pairs[:, 0]], f2.keypoints[pairs[:, 1]], transform, threshold, robust=robust)


def verify_pairs(pairs, features: dict, n_jobs: int = 1, **match_kw) -> np.ndarray:
    """`count_inliers` of each (id, id) pair of `features`, in joblib threads (OpenCV releases the GIL):
    the one verification loop of the filters and `kit rerank`."""
    from joblib import Parallel, delayed

    counts = Parallel(n_jobs=n_jobs, prefer="threads", batch_size=64)(
        delayed(count_inliers)(features[a], features[b], **match_kw) for a, b in pairs)
    return np.asarray(counts, np.int32).reshape(-1)


class ClassRows:
    """Rows of an index grouped by label once (stable, so a class's rows stay ascending): looking a class up
    costs its size, not the index's."""

    def __init__(self, labels: np.ndarray):
        labels = np.asarray(labels)
        self.order = np.argsort(labels, kind="stable")
        self.sorted = labels[self.order]

    def rows(self, label) -> np.ndarray:
        a, b = np.searchsorted(self.sorted, label, "left"), np.searchsorted(self.sorted, label, "right")
        return self.order[a:b]

    def nearest(self, label, query_emb: np.ndarray | None, index_emb: np.ndarray | None, n: int) -> np.ndarray:
        """Rows of class `label`, the `n` most similar to `query_emb` (cosine), best first; without
        embeddings the first `n` rows of the class."""
        rows = self.rows(label)
        if len(rows) == 0 or n <= 0:
            return rows[:0]
        if index_emb is None or query_emb is None:
            return rows[:n]
        return rows[np.argsort(-(index_emb[rows] @ query_emb), kind="stable")[:n]]
