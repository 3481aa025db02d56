"""Soft voting: weighted average of top-k scores over the union of labels, and GAP-maximising simplex weights."""
from __future__ import annotations

import itertools
from math import comb

import numpy as np

from kit.errors import KitError
from kit.predictions import Predictions, group_rows, top_per_row
from kit.truth import truth_for


def align(preds: list[Predictions]) -> list[Predictions]:
    """Reindex every input to the union of ids (first-seen order); missing ids become empty rows."""
    if not preds:
        raise KitError("ensemble: no inputs")
    import pandas as pd  # not imported for `kit --help`

    ids = pd.unique(np.concatenate([p.ids.astype(object) for p in preds]))  # first-seen order, hashed in C
    return [p.reindex(ids) for p in preds]


def check_weights(weights, m: int) -> np.ndarray:
    w = np.ones(m) if weights is None else np.asarray(weights, float).ravel()
    if len(w) != m:
        raise KitError(f"ensemble: {len(w)} weights for {m} inputs")
    if (w < 0).any() or w.sum() <= 0:
        raise KitError(f"ensemble: weights must be >= 0 with a positive sum (got {w.tolist()})")
    return w


class SoftPlan:
    """`soft_average` for many weight vectors on the same inputs: grouping once, then a bincount and a sort per call."""

    def __init__(self, preds: list[Predictions]):
        self.preds = align(preds)
        self.labels = np.concatenate([p.labels for p in self.preds], axis=1)  # [N, sum k]
        self.keep, self.group, self.g_rows, self.g_labels = group_rows(self.labels)
        self.rows, self.starts = np.unique(self.g_rows, return_index=True)  # rows with >= 1 label

    def totals(self, weights=None) -> np.ndarray:
        """Weighted average score of every (row, label) group."""
        w = check_weights(weights, len(self.preds))
        contrib = np.concatenate([wj * np.where(p.labels >= 0, p.scores, 0.0) for wj, p in zip(w, self.preds)],
                                 axis=1)
        return np.bincount(self.group, weights=contrib.ravel()[self.keep], minlength=len(self.g_rows)) / w.sum()

    def __call__(self, weights=None, topk: int | None = None) -> Predictions:
        topk = topk or max(p.labels.shape[1] for p in self.preds)
        totals = self.totals(weights)
        n = len(self.labels)
        top = self._top1(totals) if topk == 1 else top_per_row(totals, self.g_rows, self.g_labels, n, topk)
        return Predictions(self.preds[0].ids, *top)

    def _top1(self, totals: np.ndarray):
        """Rank 0 of `top_per_row` without a sort: per row the smallest label with the highest total (NaN last)."""
        out_l = np.full((len(self.labels), 1), -1, np.int64)
        out_s = np.zeros((len(self.labels), 1), np.float32)
        if len(totals) == 0:
            return out_l, out_s
        best = np.fmax.reduceat(totals, self.starts)  # NaN-ignoring max per row
        at = np.arange(len(totals))
        is_best = totals == np.repeat(best, np.diff(np.append(self.starts, len(totals))))
        first = np.minimum.reduceat(np.where(is_best, at, len(totals)), self.starts)
        first = np.where(first == len(totals), self.starts, first)  # all NaN: the first group, like the sort
        out_l[self.rows, 0], out_s[self.rows, 0] = self.g_labels[first], totals[first]
        return out_l, out_s


def soft_average(preds: list[Predictions], weights=None, topk: int | None = None) -> Predictions:
    """Weighted average of top-k scores over the union of labels (absent = 0) -> its top-k (ties: smaller label)."""
    return SoftPlan(preds)(weights, topk)


def fit_soft_weights(preds: list[Predictions], solution, step: float = 0.1) -> np.ndarray:
    """Simplex weights (grid `step`) maximising GAP on OOF: exhaustive up to 2000 points, else coordinate search."""
    m = len(preds)
    if m == 1:
        return np.ones(1)
    n = int(round(1 / step))
    from kit.metrics import Matcher  # pandas: not imported for `kit --help`

    plan = SoftPlan(preds)  # align + grouping once for every grid point
    matcher = Matcher(truth_for(plan.preds[0], solution), plan.preds[0].ids.astype(object))

    def score(w):  # = score_gap(soft_average(preds, w), solution), the string work done once
        top = plan(w, topk=1)
        label = top.labels[:, 0]
        return float(matcher.gap(label, np.where(label >= 0, top.scores[:, 0], 0.0).astype(np.float32)))

    if comb(n + m - 1, m - 1) <= 2000:  # the number of `_compositions`
        grid = [np.array(c, float) / n for c in _compositions(n, m)]
        gaps = [score(w) for w in grid]
        return grid[int(np.argmax(gaps))]
    w = np.full(m, 1.0 / m)
    best = score(w)
    for _ in range(3):
        improved = False
        for j, t in itertools.product(range(m), np.arange(n + 1) / n):
            rest = w.sum() - w[j]
            cand = w * ((1 - t) / rest if rest > 0 else 0.0)
            cand[j] = t
            if cand.sum() > 0 and (g := score(cand)) > best:
                w, best, improved = cand, g, True
        if not improved:
            break
    return w


def _compositions(n: int, m: int):
    """All m-tuples of non-negative ints summing to n (stars and bars), in lexicographic bar order."""
    for bars in itertools.combinations(range(n + m - 1), m - 1):
        edges = (-1, *bars, n + m - 1)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(m))
