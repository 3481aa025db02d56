"""Non-landmark filters: rescore a prediction file so that predictions on images without a landmark
rank below the verified ones (GAP punishes every wrong prediction ranked above a right one).

Each filter computes one number per image (its *signal*: RANSAC inliers, similarity to distractors,
similarity to the predicted class's centroids) and maps (score, signal) to a new score with a few
parameters that `fit` chooses on validation images plus non-landmark distractors to maximise GAP.
FILTERS: "delf" / "sift" (local features + geometric verification against the predicted class's
nearest training images), "distractor" (GLR 2020: subtract alpha * similarity to a non-landmark set),
"centroid" (Mail.ru: cosine to the predicted class's centroids below eta = no landmark). Names joined by
"+" chain filters (`delf+distractor`). A fitted filter is saved as JSON (`save_filter`/`load_filter`).

Failing rows are demoted (every score of the row minus 1 + the score range, so they rank below every
passing row, order kept) or, with mode="drop", emptied (label -1).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.errors import KitError
from kit.predictions import Predictions

log = logging.getLogger("kit.filter")
MODES = ("demote", "drop")
MAX_CANDIDATES = 64


# ------------------------------------------------------------------------------------ pure maths
def demote_offset(scores: np.ndarray) -> float:
    """1 + (max - min) of the present top-1 scores: subtracting it puts a row below every other row."""
    s = scores[np.isfinite(scores)]
    return 1.0 + float(s.max() - s.min()) if len(s) else 1.0


def rescore(pred: Predictions, passed: np.ndarray, mode: str = "demote", bonus: np.ndarray | None = None) -> Predictions:
    """Rows that `passed` keep their scores (+ `bonus`); the others are demoted or dropped (see module doc)."""
    if mode not in MODES:
        raise KitError(f"filter: unknown mode '{mode}' (valid: {', '.join(MODES)})")
    passed = np.asarray(passed, bool)
    has = pred.labels >= 0
    present = has[:, 0]
    labels, scores = pred.labels.copy(), pred.scores.astype(np.float64)
    offset = demote_offset(scores[present, 0])
    if bonus is not None:
        scores[passed] += np.where(has[passed], np.asarray(bonus, np.float64)[passed, None], 0.0)
    fail = ~passed & present
    if mode == "drop":
        labels[fail], scores[fail] = -1, 0.0
    else:
        scores[fail] = np.where(has[fail], scores[fail] - offset, 0.0)
    return Predictions(pred.ids, labels, scores.astype(np.float32), pred.embeddings)


def candidates(signal: np.ndarray, n: int = MAX_CANDIDATES) -> np.ndarray:
    """Threshold candidates for `signal >= t`: the smallest value (all pass) and the midpoints between
    consecutive distinct values (quantiles of them when there are more than `n`)."""
    u = np.unique(signal[np.isfinite(signal)])
    if len(u) > n:
        u = np.unique(np.quantile(u, np.linspace(0, 1, n)))
    return np.concatenate([u[:1], (u[1:] + u[:-1]) / 2])


def true_top1(pred: Predictions, solution) -> np.ndarray:
    """One true label per row for kit.metrics.gap: the predicted label when the solution lists it (an image
    may show several landmarks), else its first landmark, else -1. Ids absent from the solution -> -1."""
    truth = dict(zip(solution["id"].astype(str), solution["landmarks"]))
    out = np.full(len(pred), -1, np.int64)
    for i, (image_id, label) in enumerate(zip(pred.ids, pred.labels[:, 0])):
        lms = truth.get(image_id) or []
        out[i] = label if label in lms else (lms[0] if lms else -1)
    return out


def score_gap(pred: Predictions, true: np.ndarray) -> float:
    from kit.metrics import gap

    return gap(pred.labels[:, 0], pred.scores[:, 0], true, pred.ids)


# --------------------------------------------------------------------------------------- filters
class Filter:
    """A filter: `signal(pred)` (the costly part) -> `apply(pred, signal)` with fitted `params`."""

    name = "base"
    defaults: dict = {}
    threshold_key: str | None = None  # the param swept over signal values (ties -> median, see fit)

    def __init__(self, mode: str = "demote", params: dict | None = None, **settings):
        self.mode = mode
        self.settings = settings
        self.params = {**self.defaults, **(params or {})}
        self.fit_report: dict = {}
        self.last_passed: np.ndarray | None = None  # rows that passed the latest apply

    def signal(self, pred: Predictions) -> np.ndarray:
        raise NotImplementedError

    def apply(self, pred: Predictions, signal: np.ndarray, **params) -> Predictions:
        raise NotImplementedError

    def grid(self, signal: np.ndarray) -> list[dict]:
        raise NotImplementedError

    def rescore(self, pred: Predictions, signal: np.ndarray | None = None) -> Predictions:
        return self.apply(pred, self.signal(pred) if signal is None else signal, **self.params)

    def fit(self, pred: Predictions, true: np.ndarray, signal: np.ndarray | None = None) -> "Filter":
        """Choose the params of `grid` with the highest GAP on (pred, true). When several values of the
        threshold (`threshold_key`) tie with the other params equal, take their median: the widest
        margin to both classes, which holds up better on new images than the edge of the range."""
        signal = self.signal(pred) if signal is None else signal
        before = score_gap(pred, true)
        grid = self.grid(signal)
        gaps = np.array([score_gap(self.apply(pred, signal, **p), true) for p in grid])
        first = int(np.argmax(gaps))
        best, best_gap = grid[first], float(gaps[first])
        key = self.threshold_key
        if key:
            same = [p for p, g in zip(grid, gaps) if g >= best_gap - 1e-12
                    and all(p[k] == best[k] for k in p if k != key)]
            values = sorted(p[key] for p in same)
            best = {**best, key: values[(len(values) - 1) // 2]}
        self.params = {**self.params, **best}
        self.fit_report = {"gap_before": before, "gap_after": best_gap, "params": dict(self.params)}
        return self

    def to_dict(self) -> dict:
        d = {"name": self.name, "mode": self.mode, "params": self.params, "settings": self.settings}
        if getattr(self, "fit_report", None):
            d["fit"] = {k: v for k, v in self.fit_report.items() if k != "params"}  # GAP on the fit set
        return d


class LocalFilter(Filter):
    """Geometric verification: max RANSAC inliers between the image and the `neighbours` training images of
    its predicted class nearest by global embedding. Below `threshold` inliers the row fails; passing rows
    gain boost * min(inliers, cap) / cap."""

    defaults = {"threshold": 10.0, "boost": 0.0}
    threshold_key = "threshold"

    def __init__(self, extractor: str = "sift", train_pred: str | None = None, train_labels: str | None = None,
                 data_dir: str = ".", cache_dir: str | None = "cache/localfeatures", neighbours: int = 3,
                 ratio: float = 0.8, transform: str = "affine", ransac_threshold: float = 8.0, cap: float = 50.0,
                 chunk: int = 256, n_jobs: int = 1, extractor_kw: dict | None = None, **kw):
        super().__init__(extractor=extractor, train_pred=train_pred, train_labels=train_labels, data_dir=data_dir,
                         cache_dir=cache_dir, neighbours=neighbours, ratio=ratio, transform=transform,
                         ransac_threshold=ransac_threshold, cap=cap, chunk=chunk, n_jobs=n_jobs,
                         extractor_kw=extractor_kw or {}, **kw)
        self.name = extractor
        self._extractor = None
        self._index = None
        self.seconds = {"features": 0.0, "matching": 0.0}

    @property
    def extractor(self):
        from kit.localfeatures import build_extractor

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
        from joblib import Parallel, delayed
        from tqdm import tqdm

        from kit.localfeatures import cached_features
        from kit.matching import class_neighbours, count_inliers

        s, idx = self.settings, self.index
        emb = pred.embeddings if idx.embeddings is not None else None
        if emb is not None and emb.shape[1] != idx.embeddings.shape[1]:
            raise KitError(f"filter: embeddings have {emb.shape[1]} dims, {s['train_pred']} has {idx.embeddings.shape[1]}")
        out = np.zeros(len(pred), np.float32)
        rows = np.flatnonzero(pred.labels[:, 0] >= 0)
        match_kw = dict(ratio=s["ratio"], transform=s["transform"], threshold=s["ransac_threshold"])
        for start in tqdm(range(0, len(rows), s["chunk"]), desc=f"{self.name} verify", unit="chunk",
                          disable=len(rows) <= s["chunk"]):
            chunk = rows[start:start + s["chunk"]]
            nbrs = {}
            for i in chunk:  # one spare neighbour: the image itself never verifies itself
                near = idx.ids[class_neighbours(None if emb is None else emb[i], pred.labels[i, 0], idx.landmarks,
                                                idx.embeddings, s["neighbours"] + 1)]
                nbrs[i] = [j for j in near if j != pred.ids[i]][:s["neighbours"]]
            need = list(dict.fromkeys([pred.ids[i] for i in chunk] + [j for v in nbrs.values() for j in v]))
            t0 = time.perf_counter()
            feats = cached_features(self.extractor, need, [find_image(s["data_dir"], j) for j in need],
                                    s["cache_dir"], progress=len(need) > 64)
            t1 = time.perf_counter()
            pairs = [(i, j) for i in chunk for j in nbrs[i]]
            counts = Parallel(n_jobs=s["n_jobs"], prefer="threads")(
                delayed(count_inliers)(feats[pred.ids[i]], feats[j], **match_kw) for i, j in pairs)
            for (i, _), c in zip(pairs, counts):
                out[i] = max(out[i], c)
            self.seconds["features"] += t1 - t0
            self.seconds["matching"] += time.perf_counter() - t1
        return out

    def apply(self, pred, signal, threshold=10.0, boost=0.0, **_):
        bonus = boost * np.minimum(signal, self.settings["cap"]) / self.settings["cap"]
        self.last_passed = signal >= threshold
        return rescore(pred, self.last_passed, self.mode, bonus)

    def grid(self, signal):
        return [{"threshold": float(t), "boost": b} for b in (0.0, 0.1, 0.3, 1.0) for t in candidates(signal)]


class DistractorFilter(Filter):
    """GLR 2020: new score = score - alpha * mean cosine of the image's k nearest non-landmark distractors
    (same ids excluded, so fitting on the distractors themselves does not leak); similarity above `tau`
    fails the row."""

    name = "distractor"
    defaults = {"alpha": 0.0, "tau": float("inf")}

    def __init__(self, distractors: str | None = None, k: int = 5, **kw):
        super().__init__(distractors=distractors, k=k, **kw)
        self._distractors = None

    def distractor_set(self) -> Predictions:
        from kit.predictions import load_predictions

        if self._distractors is None:
            path = self.settings["distractors"]
            if not path:
                raise KitError("filter distractor: give --distractors PRED.npz (embeddings of non-landmark images)")
            self._distractors = load_predictions(path)
            need_embeddings(self._distractors, path)
        return self._distractors

    def signal(self, pred):
        from kit.retrieval import SearchIndex

        dist, k = self.distractor_set(), int(self.settings["k"])
        need_embeddings(pred, "prediction file")
        if pred.embeddings.shape[1] != dist.embeddings.shape[1]:
            raise KitError(f"filter distractor: embeddings have {pred.embeddings.shape[1]} dims, "
                           f"{self.settings['distractors']} has {dist.embeddings.shape[1]}")
        sims, nn = SearchIndex(dist.embeddings).search(pred.embeddings, min(k + 1, len(dist)))
        same = (nn >= 0) & (dist.ids[np.maximum(nn, 0)] == pred.ids[:, None])
        sims = np.where(same | (nn < 0), np.nan, sims)
        sims = np.where(np.cumsum(~np.isnan(sims), axis=1) <= k, sims, np.nan)  # the first k valid ones
        n = np.sum(~np.isnan(sims), axis=1)
        return (np.nansum(sims, axis=1) / np.maximum(n, 1)).astype(np.float32)

    def apply(self, pred, signal, alpha=0.0, tau=float("inf"), **_):
        has = pred.labels >= 0
        shifted = Predictions(pred.ids, pred.labels, np.where(has, pred.scores - alpha * signal[:, None], 0.0),
                              pred.embeddings)
        self.last_passed = signal <= tau
        return rescore(shifted, self.last_passed, self.mode)

    def grid(self, signal):
        taus = [float("inf")] + [float(t) for t in candidates(signal, 32)]
        return [{"alpha": float(a), "tau": t} for t in taus for a in np.linspace(0, 3, 13)]


class CentroidFilter(Filter):
    """Mail.ru (report 004): max cosine between the embedding and its predicted class's centroids
    (kit.retrieval, complete-linkage clusters); below eta the row fails."""

    name = "centroid"
    defaults = {"eta": -1.0}
    threshold_key = "eta"

    def __init__(self, train_pred: str | None = None, train_labels: str | None = None, data_dir: str = ".",
                 distance_threshold: float = 0.5, min_cluster_size: int = 50, **kw):
        super().__init__(train_pred=train_pred, train_labels=train_labels, data_dir=data_dir,
                         distance_threshold=distance_threshold, min_cluster_size=min_cluster_size, **kw)
        self._centroids = None

    def centroids(self):
        from kit.retrieval import CentroidPredictor

        if self._centroids is None:
            s = self.settings
            idx = TrainIndex.load(s["train_pred"], s["train_labels"], s["data_dir"])
            need_embeddings(idx, s["train_pred"])
            cp = CentroidPredictor(s["distance_threshold"], s["min_cluster_size"]).fit(idx.embeddings, idx.landmarks)
            self._centroids = (cp.centroids, cp.owner)
        return self._centroids

    def signal(self, pred):
        need_embeddings(pred, "prediction file")
        cents, owner = self.centroids()
        out = np.full(len(pred), -1.0, np.float32)
        top = pred.labels[:, 0]
        for c in np.unique(top[top >= 0]):
            rows, mine = np.flatnonzero(top == c), cents[owner == c]
            if len(mine):
                out[rows] = (pred.embeddings[rows] @ mine.T).max(axis=1)
        return out

    def apply(self, pred, signal, eta=-1.0, **_):
        self.last_passed = signal >= eta
        return rescore(pred, self.last_passed, self.mode)

    def grid(self, signal):
        return [{"eta": float(t)} for t in np.concatenate([[-1.0], candidates(signal)])]


FILTERS = {
    "delf": lambda **kw: LocalFilter(extractor="delf", **kw),
    "sift": lambda **kw: LocalFilter(extractor="sift", **kw),
    "distractor": DistractorFilter,
    "centroid": CentroidFilter,
}


class Chain:
    """Filters applied in order (`delf+distractor`); each is fitted on the output of the previous ones."""

    def __init__(self, filters: list[Filter]):
        self.filters = filters
        self.name = "+".join(f.name for f in filters)

    def rescore(self, pred: Predictions) -> Predictions:
        for f in self.filters:
            pred = f.rescore(pred)
        return pred

    def fit_rescore(self, pred: Predictions, true: np.ndarray) -> Predictions:
        """Fit and return the rescored fit set (each filter's signal computed once)."""
        for f in self.filters:
            signal = f.signal(pred)
            pred = f.fit(pred, true, signal).rescore(pred, signal)
        return pred

    def to_dict(self) -> dict:
        return {"filter": self.name, "stages": [f.to_dict() for f in self.filters]}


def build_filter(spec: str, mode: str = "demote", settings: dict | None = None) -> Chain:
    """`spec` = registry names joined by '+'; `settings` go to every filter (each takes what it knows)."""
    names = [n.strip() for n in spec.split("+") if n.strip()]
    bad = [n for n in names if n not in FILTERS]
    if not names or bad:
        raise KitError(f"filter: unknown filter '{bad[0] if bad else spec}' (valid: {', '.join(FILTERS)}, joined by +)")
    return Chain([FILTERS[n](mode=mode, **_accepted(n, settings or {})) for n in names])


def _accepted(name: str, settings: dict) -> dict:
    """The settings one filter takes (distractor ignores train_pred, ...), so one CLI dict serves a chain."""
    import inspect

    cls = LocalFilter if name in ("delf", "sift") else FILTERS[name]
    keys = set(inspect.signature(cls.__init__).parameters) | set(inspect.signature(Filter.__init__).parameters)
    return {k: v for k, v in settings.items() if k in keys and k != "mode"}


def save_filter(chain: Chain, path: str | Path) -> Path:
    from kit.io import write_json

    return write_json(chain.to_dict(), path)


def load_filter(path: str | Path, overrides: dict | None = None) -> Chain:
    """A fitted chain from its JSON; `overrides` replace settings (e.g. paths on another machine)."""
    import json

    path = Path(path)
    try:
        d = json.loads(path.read_text())
        stages = d["stages"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KitError(f"{path}: not a kit filter file ({type(e).__name__}: {e})") from None
    filters = []
    for st in stages:
        if st.get("name") not in FILTERS:
            raise KitError(f"{path}: unknown filter '{st.get('name')}' (valid: {', '.join(FILTERS)})")
        saved, given = st.get("settings", {}), _accepted(st["name"], overrides or {})
        settings = {**saved, **given}
        if "extractor_kw" in saved:  # merge: a given --image-size keeps the saved scales
            settings["extractor_kw"] = {**saved["extractor_kw"], **given.get("extractor_kw", {})}
        settings.pop("extractor", None)
        filters.append(FILTERS[st["name"]](mode=st.get("mode", "demote"), params=st.get("params"), **settings))
    return Chain(filters)


# ------------------------------------------------------------------------------------ resources
@dataclass
class TrainIndex:
    """Training images to verify against: ids, true landmark ids, global embeddings (or None)."""

    ids: np.ndarray
    landmarks: np.ndarray
    embeddings: np.ndarray | None

    @staticmethod
    def load(train_pred: str | None, train_labels: str | None, data_dir: str = ".") -> "TrainIndex":
        """Embeddings from a train prediction file; true labels from a CSV with id,landmark_id
        (a folds CSV or train.csv; default DATA/train.csv). Without train_pred: every labelled image."""
        from kit.io import read_csv
        from kit.predictions import load_predictions

        csv = Path(train_labels) if train_labels else Path(data_dir) / "train.csv"
        df = read_csv(csv, required=("id", "landmark_id"), dtype={"id": str})
        truth = dict(zip(df["id"], df["landmark_id"].astype(np.int64)))
        if not train_pred:
            return TrainIndex(df["id"].to_numpy(str), df["landmark_id"].to_numpy(np.int64), None)
        tp = load_predictions(train_pred)
        known = np.array([i in truth for i in tp.ids], bool)
        if not known.any():
            raise KitError(f"{train_pred}: none of its ids are in {csv}")
        tp = tp.subset(np.flatnonzero(known))
        return TrainIndex(tp.ids, np.array([truth[i] for i in tp.ids], np.int64), tp.embeddings)


def need_embeddings(obj, what) -> None:
    if getattr(obj, "embeddings", None) is None:
        raise KitError(f"{what}: has no embeddings (run `kit predict` with a model that outputs them)")


def find_image(data_dir: str | Path, image_id: str) -> Path:
    """The image of `image_id`: DATA/{test,train,distractors}/a/b/c, DATA/<id>.jpg or DATA/images/<id>.jpg."""
    from kit.io import image_path

    tries = [image_path(data_dir, "test", image_id), image_path(data_dir, "train", image_id),
             image_path(data_dir, "distractors", image_id),
             Path(data_dir) / f"{image_id}.jpg", Path(data_dir) / "images" / f"{image_id}.jpg"]
    return next((p for p in tries if p.is_file()), tries[0])
