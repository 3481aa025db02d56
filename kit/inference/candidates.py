"""Which index images a query verifies: its global nearest neighbours plus the most similar images of
its likeliest classes (other views of a landmark that global similarity ranks low)."""
from __future__ import annotations

import numpy as np

from kit.inference.retrieval import knn_vote
from kit.localfeatures.matching import ClassRows


def class_candidates(query_emb: np.ndarray, sims: np.ndarray, rows: np.ndarray, index_emb: np.ndarray,
                     labels: np.ndarray, classes: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The neighbours (sims, rows [Q, N], row -1 = none) plus the `per_class` most similar index images of each
    query's `classes` best classes not already there -> padded [Q, N + classes * per_class]."""
    if classes <= 0 or per_class <= 0 or not len(rows):
        return sims, rows
    nbr_labels = np.where(rows >= 0, labels[np.maximum(rows, 0)], -1)
    top, _ = knn_vote(sims, nbr_labels, classes, power=1.0, agg="max")
    by_class = ClassRows(labels)
    width = rows.shape[1] + classes * per_class
    out_s = np.full((len(rows), width), -1.0, np.float32)
    out_r = np.full((len(rows), width), -1, np.int64)
    out_s[:, :rows.shape[1]], out_r[:, :rows.shape[1]] = sims, rows
    for q in range(len(rows)):
        have, n = set(rows[q][rows[q] >= 0].tolist()), rows.shape[1]
        for label in top[q][top[q] >= 0].tolist():
            for m in by_class.nearest(label, query_emb[q], index_emb, per_class).tolist():
                if m not in have:
                    have.add(m)
                    out_s[q, n], out_r[q, n] = index_emb[m] @ query_emb[q], m
                    n += 1
    return out_s, out_r
