"""Local-feature filters (delf, sift): geometric verification against the predicted class's training images."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from kit.errors import KitError
from kit.filters.base import Filter, TrainIndex, candidates, rescore
from kit.localfeatures.matching import ClassRows
from kit.localfeatures.verification import PairVerifier, Verification
from kit.predictions import Predictions


def select_candidates(pred: Predictions, idx: TrainIndex, rows, n: int, emb="index") -> dict:
    """Per row i of `rows`: the ids of the `n` training images of its predicted class nearest by global
    embedding (the image itself excluded), the index grouped by class once (`ClassRows`)."""
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
    """Max inliers (verified as `kit rerank` does) with the `neighbours` nearest training images of the predicted
    class: below `threshold` the row fails; passing rows gain boost * min(inliers, cap) / cap."""

    defaults = {"threshold": 10.0, "boost": 0.0}
    threshold_key = "threshold"

    def __init__(self, extractor: str = "sift", train_pred: str | None = None, train_labels: str | None = None,
                 data_dir: str = ".", cache_dir: str | None = "auto", neighbours: int = 3,
                 ratio: float | None = None, transform: str | None = None, ransac_threshold: float | None = None,
                 robust: str | None = None, cap: float = 50.0, chunk: int = 256, n_jobs: int = 1,
                 extractor_kw: dict | None = None, strict: bool = False, **kw):
        d = Verification()
        super().__init__(extractor=extractor, train_pred=train_pred, train_labels=train_labels, data_dir=data_dir,
                         cache_dir=cache_dir, neighbours=neighbours, ratio=d.ratio if ratio is None else ratio,
                         transform=transform or d.transform,
                         ransac_threshold=d.ransac_threshold if ransac_threshold is None else ransac_threshold,
                         robust=robust or d.robust, cap=cap, chunk=chunk, n_jobs=n_jobs,
                         extractor_kw=extractor_kw or {}, strict=bool(strict), **kw)
        self.name = extractor

    @property
    def verification(self) -> Verification:
        s = self.settings
        return Verification(verifier=s["extractor"], ratio=s["ratio"], transform=s["transform"],
                            ransac_threshold=s["ransac_threshold"], robust=s["robust"],
                            threads=s["n_jobs"], extractor_kw=dict(s["extractor_kw"]))

    @cached_property
    def verifier(self) -> PairVerifier:
        s = self.settings
        return PairVerifier(self.verification, s["data_dir"], s["cache_dir"], progress=True, strict=s["strict"])

    @cached_property
    def index(self) -> TrainIndex:
        s = self.settings
        return TrainIndex.load(s["train_pred"], s["train_labels"], s["data_dir"])

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
        rows = np.flatnonzero(pred.labels[:, 0] >= 0)
        nbrs = select_candidates(pred, idx, rows, s["neighbours"], emb)
        pv = self.verifier
        before = dict(pv.clock)
        for start in progress(range(0, len(rows), s["chunk"]), desc=f"{self.name} verify", unit="chunk",
                              disable=len(rows) <= s["chunk"]):
            chunk = rows[start:start + s["chunk"]]
            rows_of = np.array([i for i in chunk for _ in nbrs[i]], np.int64)
            pairs = [(str(pred.ids[i]), str(j)) for i in chunk for j in nbrs[i]]
            if pairs:
                np.maximum.at(out, rows_of, pv.inliers(pairs))
        seconds = {k: pv.clock[k] - before[k] for k in ("features", "matching")}
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
