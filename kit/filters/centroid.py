"""Centroid filter (Mail.ru, report 004): reject images far from their predicted class's centroids."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from kit.filters.base import Filter, TrainIndex, candidates, need_embeddings, rescore
from kit.inference.retrieval import CentroidPredictor


class CentroidFilter(Filter):
    """Mail.ru (report 004): max cosine between the embedding and its predicted class's centroids
    (kit.retrieval, complete-linkage clusters); below eta the row fails."""

    name = "centroids"
    defaults = {"eta": -1.0}
    threshold_key = "eta"

    def __init__(self, train_pred: str | None = None, train_labels: str | None = None, data_dir: str = ".",
                 distance_threshold: float = 0.5, min_cluster_size: int = 50, **kw):
        super().__init__(train_pred=train_pred, train_labels=train_labels, data_dir=data_dir,
                         distance_threshold=distance_threshold, min_cluster_size=min_cluster_size, **kw)

    @cached_property
    def centroids(self) -> tuple:
        """(centroids, owner class of each) of the training index."""
        s = self.settings
        idx = TrainIndex.load(s["train_pred"], s["train_labels"], s["data_dir"])
        need_embeddings(idx, s["train_pred"])
        cp = CentroidPredictor(s["distance_threshold"], s["min_cluster_size"]).fit(idx.embeddings, idx.landmarks)
        return cp.centroids, cp.owner

    def signal(self, pred):
        need_embeddings(pred, "prediction file")
        cents, owner = self.centroids
        out = np.full(len(pred), -1.0, np.float32)
        top = pred.labels[:, 0]
        for c in np.unique(top[top >= 0]):
            rows, mine = np.flatnonzero(top == c), cents[owner == c]
            if len(mine):
                out[rows] = (pred.embeddings[rows] @ mine.T).max(axis=1)
        return out

    def _rescore(self, pred, signal, p):
        passed = signal >= p["eta"]
        return rescore(pred, passed, self.mode), passed

    def grid(self, signal):
        return [{"eta": float(t)} for t in np.concatenate([[-1.0], candidates(signal)])]
