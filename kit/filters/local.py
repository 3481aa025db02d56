"""Local-feature filters (delf, sift): geometric verification against the predicted class's training images."""
from __future__ import annotations

import time

import numpy as np

from kit.errors import KitError
from kit.filters.base import Filter, TrainIndex, candidates, rescore
from kit.layout import find_image
from kit.localfeatures import build_extractor
from kit.localfeatures.base import cached_features, resolve_cache_dir
from kit.localfeatures.matching import ClassRows, verify_pairs
from kit.predictions import Predictions


def select_candidates(pred: Predictions, idx: TrainIndex, rows, n: int, emb="index") -> dict:
    """Per row i of `rows`: the ids of the `n` training images of its predicted class nearest by global
    embedding (the image itself excluded); the index is grouped by class once (`ClassRows`), so each row
    costs its class's size, not the whole index."""
    if isinstance(emb, str):
        emb = pred.embeddings if idx.embeddings is not None else None
    by_class = ClassRows(idx.landmarks)
    index_emb = idx.embeddings if emb is not None else None
    out = {}
    for i in rows:  # one spare neighbour: the image itself never verifies itself
        near = idx.ids[by_class.nearest(pred.labels[i, 0], None if emb is None else emb[i], index_emb, n + 1)]
        out[i] = [j for j in near if j != pred.ids[i]][:n]
    return out


class LocalFilter(Filter):
    """Geometric verification: max RANSAC inliers between the image and the `neighbours` training images of
    its predicted class nearest by global embedding. Below `threshold` inliers the row fails; passing rows
    gain boost * min(inliers, cap) / cap."""

    defaults = {"threshold": 10.0, "boost": 0.0}
    threshold_key = "threshold"

    def __init__(self, extractor: str = "sift", train_pred: str | None = None, train_labels: str | None = None,
                 data_dir: str = ".", cache_dir: str | None = "auto", neighbours: int = 3,
                 ratio: float = 0.8, transform: str = "affine", ransac_threshold: float = 8.0, cap: float = 50.0,
                 chunk: int = 256, n_jobs: int = 1, extractor_kw: dict | None = None, strict: bool = False, **kw):
        super().__init__(extractor=extractor, train_pred=train_pred, train_labels=train_labels, data_dir=data_dir,
                         cache_dir=cache_dir, neighbours=neighbours, ratio=ratio, transform=transform,
                         ransac_threshold=ransac_threshold, cap=cap, chunk=chunk, n_jobs=n_jobs,
                         extractor_kw=extractor_kw or {}, strict=bool(strict), **kw)
        self.name = extractor
        self._extractor = None
        self._index = None

    @property
    def extractor(self):
        if self._extractor is None:
            self._extractor = build_extractor(self.settings["extractor"], **self.settings["extractor_kw"])
        return self._extractor

    @property
    def index(self) -> "TrainIndex":
        if self._index is None:
            s = self.settings
            self._index = TrainIndex.load(s["train_pred"], s["train_labels"], s["data_dir"])
        return self._index

    def signal(self, pred: Predictions) -> np.ndarray:
        return self.measure(pred)[0]

    def measure(self, pred: Predictions) -> tuple[np.ndarray, dict]:
        """Max inliers per row, and the seconds spent on features (extraction or cache) and on matching."""
        from kit.progress import progress  # tqdm: not imported for `kit --help`

        s, idx = self.settings, self.index
        emb = pred.embeddings if idx.embeddings is not None else None
        if emb is not None and emb.shape[1] != idx.embeddings.shape[1]:
            raise KitError(f"filter: embeddings have {emb.shape[1]} dims, {s['train_pred']} has {idx.embeddings.shape[1]}")
        out = np.zeros(len(pred), np.float32)
        seconds = {"features": 0.0, "matching": 0.0}
        rows = np.flatnonzero(pred.labels[:, 0] >= 0)
        match_kw = dict(ratio=s["ratio"], transform=s["transform"], threshold=s["ransac_threshold"])
        nbrs = select_candidates(pred, idx, rows, s["neighbours"], emb)
        for start in progress(range(0, len(rows), s["chunk"]), desc=f"{self.name} verify", unit="chunk",
                          disable=len(rows) <= s["chunk"]):
            chunk = rows[start:start + s["chunk"]]
            need = list(dict.fromkeys([pred.ids[i] for i in chunk] + [j for i in chunk for j in nbrs[i]]))
            t0 = time.perf_counter()
            feats = cached_features(self.extractor, need, [find_image(s["data_dir"], j) for j in need],
                                    resolve_cache_dir(s["cache_dir"]), progress=len(need) > 64,
                                    strict=s.get("strict", False))
            t1 = time.perf_counter()
            rows_of = np.array([i for i in chunk for _ in nbrs[i]], np.int64)
            pairs = [(pred.ids[i], j) for i in chunk for j in nbrs[i]]
            np.maximum.at(out, rows_of, verify_pairs(pairs, feats, s["n_jobs"], **match_kw))
            seconds["features"] += t1 - t0
            seconds["matching"] += time.perf_counter() - t1
        return out, {"signal": seconds["features"] + seconds["matching"], **seconds}

    def _rescore(self, pred, signal, p):
        bonus = p["boost"] * np.minimum(signal, self.settings["cap"]) / self.settings["cap"]
        passed = signal >= p["threshold"]
        return rescore(pred, passed, self.mode, bonus), passed

    def grid(self, signal):
        return [{"threshold": float(t), "boost": b} for b in (0.0, 0.1, 0.3, 1.0) for t in candidates(signal)]


class SiftFilter(LocalFilter):
    """Verification with OpenCV (Root)SIFT: no weights."""

    def __init__(self, **kw):
        super().__init__(extractor="sift", **kw)


class DelfFilter(LocalFilter):
    """Verification with DELF features (kit.localfeatures.delf)."""

    def __init__(self, **kw):
        super().__init__(extractor="delf", **kw)
