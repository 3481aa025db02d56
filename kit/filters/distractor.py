"""Distractor filter (GLR 2020): demote images similar to a set of non-landmark photos."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from kit.errors import KitError
from kit.filters.base import Filter, candidates, need_embeddings, rescore
from kit.inference.search import reference_similarity
from kit.predictions import Predictions, load_predictions


class DistractorFilter(Filter):
    """GLR 2020: score - alpha * mean cosine of the k nearest distractors (same ids excluded, so fitting on the
    distractors does not leak); a similarity above `tau` fails the row."""

    name = "distractor"
    defaults = {"alpha": 0.0, "tau": float("inf")}

    def __init__(self, distractors: str | None = None, k: int = 5, **kw):
        super().__init__(distractors=distractors, k=k, **kw)

    @cached_property
    def distractor_set(self) -> Predictions:
        path = self.settings["distractors"]
        if not path:
            raise KitError("filter distractor: give --distractors PRED.npz (embeddings of non-landmark images)")
        dist = load_predictions(path)
        need_embeddings(dist, path)
        return dist

    def signal(self, pred):
        dist, k = self.distractor_set, int(self.settings["k"])
        need_embeddings(pred, "prediction file")
        if pred.embeddings.shape[1] != dist.embeddings.shape[1]:
            raise KitError(f"filter distractor: embeddings have {pred.embeddings.shape[1]} dims, "
                           f"{self.settings['distractors']} has {dist.embeddings.shape[1]}")
        return reference_similarity(pred.embeddings, pred.ids, dist.embeddings, dist.ids, k)

    def _rescore(self, pred, signal, p):
        has = pred.labels >= 0
        shifted = Predictions(pred.ids, pred.labels, np.where(has, pred.scores - p["alpha"] * signal[:, None], 0.0),
                              pred.embeddings)
        passed = signal <= p["tau"]
        return rescore(shifted, passed, self.mode), passed

    def grid(self, signal):
        taus = [float("inf")] + [float(t) for t in candidates(signal, 32)]
        return [{"alpha": float(a), "tau": t} for t in taus for a in np.linspace(0, 3, 13)]
