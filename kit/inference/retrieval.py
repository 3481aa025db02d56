"""Retrieval predictors over embeddings, writing the same `Predictions` as the classifiers: kNN class
votes (report 002) and nearest class centroids (Mail.ru report 004, section 3.4). The search backend
(faiss or torch, CPU or GPU) is kit.inference.search's choice."""
from __future__ import annotations

import os

import numpy as np

from kit.errors import KitError
from kit.inference.expansion import alpha_qe, dba
from kit.inference.search import SearchIndex, l2n
from kit.predictions import Predictions, first_per_row, group_rows, load_predictions, top_per_row
from kit.registry import Registry


AGGREGATIONS = Registry("aggregation", dict.fromkeys(("sum", "max")))


def knn_vote(sims: np.ndarray, neighbour_labels: np.ndarray, topk: int, power: float = 1.0, agg: str = "sum"):
    """Per query, classes ranked by the sum (or max: 1-NN per class, not favouring big classes) of
    max(sim, 0) ** power over its neighbours of that class -> (labels [Q, topk], scores [Q, topk])."""
    AGGREGATIONS.check(agg, "knn: ")
    votes = np.where(neighbour_labels >= 0, np.clip(sims, 0, None) ** power, 0.0).ravel()
    keep, group, g_rows, g_lab = group_rows(neighbour_labels)  # (query, class) groups
    if agg == "sum" or not len(keep):
        total = np.bincount(group, weights=votes[keep], minlength=len(g_rows))
    else:  # best neighbour of each (query, class) group
        total = np.maximum.reduceat(votes[keep], np.flatnonzero(np.diff(group, prepend=-1)))
    return top_per_row(total, g_rows, g_lab, len(neighbour_labels), topk)


class KnnPredictor:
    """kNN voting over an index of labelled embeddings (report 002); optional DBA on the index and
    alpha-QE on the queries (kit.inference.expansion; 0 = off)."""

    def __init__(self, k: int = 10, power: float = 1.0, agg: str = "sum", qe: int = 0, qe_alpha: float = 3.0,
                 dba: int = 0, dba_alpha: float = 3.0, **index_kw):
        self.k, self.power, self.agg, self.index_kw = k, power, agg, index_kw
        self.qe, self.qe_alpha, self.dba, self.dba_alpha = qe, qe_alpha, dba, dba_alpha

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> "KnnPredictor":
        self.labels = np.asarray(labels, np.int64)
        if len(self.labels) != len(embeddings) or len(embeddings) == 0:
            raise KitError(f"knn: {len(embeddings)} embeddings for {len(self.labels)} labels")
        self.xb = dba(embeddings, self.dba, self.dba_alpha)
        self.index = SearchIndex(self.xb, **self.index_kw)
        return self

    def search(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(sims, rows) of the k nearest index images of each query (after alpha-QE when on)."""
        return self.index.search(alpha_qe(embeddings, self.xb, self.qe, self.qe_alpha, self.index), k)

    def predict(self, ids, embeddings: np.ndarray, topk: int = 5) -> Predictions:
        sims, idx = self.search(embeddings, self.k)
        nl = np.where(idx >= 0, self.labels[np.maximum(idx, 0)], -1)
        labels, scores = knn_vote(sims, nl, topk, self.power, self.agg)
        return Predictions(ids, labels, scores, l2n(embeddings))


def class_centroids(embeddings: np.ndarray, distance_threshold: float = 0.5, min_cluster_size: int = 50,
                    max_per_class: int = 2000, seed: int = 0) -> np.ndarray:
    """Centroids of one class (report 004, eq. 2): complete-linkage clusters with >= `min_cluster_size` members
    (else the largest); a class over `max_per_class` is subsampled (clustering is O(n^2) memory)."""
    from sklearn.cluster import AgglomerativeClustering

    x = l2n(embeddings)
    if len(x) > max_per_class:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_per_class, replace=False))]
    if len(x) < 2:
        return l2n(x)
    assign = AgglomerativeClustering(n_clusters=None, linkage="complete", metric="cosine",
                                     distance_threshold=distance_threshold).fit_predict(x)
    sizes = np.bincount(assign)
    valid = np.flatnonzero(sizes >= min_cluster_size)
    if len(valid) == 0:
        valid = [int(np.argmax(sizes))]
    return l2n(np.stack([x[assign == c].mean(axis=0) for c in valid]))


class CentroidPredictor:
    """Nearest class centroids (several per class), max cosine similarity per class, threshold for
    "no landmark"."""

    def __init__(self, distance_threshold: float = 0.5, min_cluster_size: int = 50, threshold: float | None = None,
                 max_per_class: int = 2000, n_jobs: int = 1, **index_kw):
        self.distance_threshold, self.min_cluster_size = distance_threshold, min_cluster_size
        self.threshold, self.max_per_class, self.n_jobs, self.index_kw = threshold, max_per_class, n_jobs, index_kw

    def fit(self, embeddings: np.ndarray, labels: np.ndarray) -> "CentroidPredictor":
        from joblib import Parallel, delayed

        labels = np.asarray(labels, np.int64)
        if len(labels) != len(embeddings) or len(labels) == 0:
            raise KitError(f"centroids: {len(embeddings)} embeddings for {len(labels)} labels")
        classes = np.unique(labels)
        embeddings = np.asarray(embeddings, np.float32)
        cents = Parallel(n_jobs=self.n_jobs)(
            delayed(class_centroids)(embeddings[labels == c], self.distance_threshold, self.min_cluster_size,
                                     self.max_per_class)
            for c in classes)
        self.centroids = np.concatenate(cents)
        self.owner = np.repeat(classes, [len(c) for c in cents])
        self.max_per_class = max(len(c) for c in cents)
        self.index = SearchIndex(self.centroids, **self.index_kw)
        return self

    def predict(self, ids, embeddings: np.ndarray, topk: int = 5) -> Predictions:
        # topk * (most centroids of any class) neighbours always contain the best centroid of each of
        # the topk best classes, so the per-class max below is exact.
        sims, idx = self.index.search(embeddings, topk * self.max_per_class)
        labels, scores = first_per_owner(sims, self.owner[np.maximum(idx, 0)], idx >= 0, topk)
        if self.threshold is not None:  # scores are descending, so this blanks a suffix of each row
            low = scores < self.threshold
            labels[low], scores[low] = -1, 0.0
        return Predictions(ids, labels, scores, l2n(embeddings))


def first_per_owner(sims: np.ndarray, owners: np.ndarray, valid: np.ndarray, topk: int):
    """Per query row, the first (= most similar) neighbour of each owner class, in neighbour order,
    the first `topk` of them -> (labels [Q, topk], scores [Q, topk]); `valid` False = no neighbour."""
    q, k = owners.shape
    keep = np.flatnonzero(valid.ravel())
    rows, own = keep // max(k, 1), owners.ravel()[keep]
    order = np.lexsort((keep, own, rows))
    keep, rows, own = keep[order], rows[order], own[order]
    first = np.ones(len(keep), bool)
    first[1:] = (rows[1:] != rows[:-1]) | (own[1:] != own[:-1])
    keep = np.sort(keep[first])  # back to (query, neighbour) order
    return first_per_row(keep // max(k, 1), owners.ravel()[keep], sims.ravel()[keep], q, topk)


RETRIEVERS = Registry("retriever", {"knn": KnnPredictor, "centroids": CentroidPredictor})


def index_labels(ids, labels_csv) -> np.ndarray:
    """Landmark id of each index image from a CSV with id,landmark_id (folds CSV, train.csv)."""
    from kit.data.train_csv import read_train  # pandas: not imported for `kit --help`

    df = read_train(labels_csv)  # ids stripped; blank/duplicate ids, bad landmark ids: one-line errors
    lab = df.set_index("id")["landmark_id"].reindex(np.asarray(ids).astype(str))
    if lab.isna().any():
        first = lab.index[lab.isna().to_numpy()][0]
        raise KitError(f"{labels_csv}: {int(lab.isna().sum())} index id(s) have no landmark_id (first: {first})")
    return lab.to_numpy(np.int64)


def fit_retriever(name: str, index: Predictions, labels_csv, **kw):
    """RETRIEVERS[name](**kw) fitted on a prediction file's embeddings and their true landmark ids."""
    RETRIEVERS.check(name, "")
    if index.embeddings is None:
        raise KitError("retrieval: the index prediction file has no embeddings")
    return RETRIEVERS[name](**kw).fit(index.embeddings, index_labels(index.ids, labels_csv))


def load_index(paths) -> Predictions:
    """The retrieval index from one or more prediction files (e.g. a run's train and val predictions):
    their rows stacked, each id once (first file wins)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    parts = [load_predictions(p) for p in paths]
    if any(p.embeddings is None for p in parts):
        bad = next(str(path) for path, p in zip(paths, parts) if p.embeddings is None)
        raise KitError(f"{bad}: no embeddings in this prediction file (retrieval needs them)")
    ids = np.concatenate([p.ids for p in parts])
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)
    emb = np.concatenate([p.embeddings for p in parts])[keep]
    k = max(p.labels.shape[1] for p in parts)
    return Predictions(ids[keep], np.full((len(keep), k), -1), np.zeros((len(keep), k)), emb)
