"""Non-landmark filters, the shared part: one *signal* per image (inliers, similarity to distractors or to
centroids) maps (score, signal) to a new score with params `fit` chooses for the highest GAP; failing rows are
demoted below every passing row (order kept) or, with mode="drop", emptied."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.errors import KitError
from kit.predictions import Predictions, load_predictions
from kit.truth import gap_top1

MODES = ("demote", "drop")
MAX_CANDIDATES = 64


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


@dataclass
class FilterResult:
    """What a filter or chain computed: rescored predictions, the rows that passed, the seconds spent and,
    for a filter, its signal; for a chain, each filter's result in order."""

    predictions: Predictions
    passed: np.ndarray  # bool [N]
    seconds: dict
    signal: np.ndarray | None = None
    stages: list = field(default_factory=list)


class Filter:
    """A filter: `signal(pred)` (the costly part) -> `apply(pred, signal)` with the fitted `params`
    (`defaults` holds their names and default values)."""

    name = "base"
    defaults: dict = {}
    threshold_key: str | None = None  # the param swept over signal values (ties -> median, see fit)

    def __init__(self, mode: str = "demote", params: dict | None = None, **settings):
        self.mode = mode
        self.settings = settings
        self.params = {**self.defaults, **(params or {})}
        self.fit_report: dict = {}

    def signal(self, pred: Predictions) -> np.ndarray:
        raise NotImplementedError

    def measure(self, pred: Predictions) -> tuple[np.ndarray, dict]:
        """The signal and the seconds it took."""
        t0 = time.perf_counter()
        signal = self.signal(pred)
        return signal, {"signal": time.perf_counter() - t0}

    def _rescore(self, pred: Predictions, signal: np.ndarray, p: dict) -> tuple[Predictions, np.ndarray]:
        """(rescored predictions, rows that passed) under params `p`."""
        raise NotImplementedError

    def grid(self, signal: np.ndarray) -> list[dict]:
        raise NotImplementedError

    def apply(self, pred: Predictions, signal: np.ndarray | None = None, **params) -> FilterResult:
        """Rescore `pred` with the fitted params (`params` override them); the signal is computed unless given."""
        signal, seconds = self.measure(pred) if signal is None else (signal, {})
        out, passed = self._rescore(pred, signal, {**self.params, **params})
        return FilterResult(out, passed, seconds, signal)

    def fit(self, pred: Predictions, true: np.ndarray, signal: np.ndarray | None = None) -> "Filter":
        """The params of `grid` with the highest GAP on (pred, true); of tied `threshold_key` values, the median:
        the widest margin to both classes holds up better on new images than the edge of the range."""
        signal = self.signal(pred) if signal is None else signal
        before = gap_top1(pred, true)
        grid = self.grid(signal)
        gaps = np.array([gap_top1(self._rescore(pred, signal, {**self.params, **p})[0], true) for p in grid])
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
        if self.fit_report:
            d["fit"] = {k: v for k, v in self.fit_report.items() if k != "params"}  # GAP on the fit set
        return d


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
        import pandas as pd

        from kit.data.train_csv import read_train  # pandas: not imported for `kit --help`

        csv = Path(train_labels) if train_labels else Path(data_dir) / "train.csv"
        df = read_train(csv)  # ids stripped and checked (they become image paths), unique
        if not train_pred:
            return TrainIndex(df["id"].to_numpy(str), df["landmark_id"].to_numpy(np.int64), None)
        truth = df.drop_duplicates("id", keep="last")  # a repeated id: its last row, as a dict would
        tp = load_predictions(train_pred)
        pos = pd.Index(truth["id"]).get_indexer(tp.ids)
        known = pos >= 0
        if not known.any():
            raise KitError(f"{train_pred}: none of its ids are in {csv}")
        if not known.all():  # (a subset copies the embeddings: GBs at GLDv2 size)
            tp = tp.subset(np.flatnonzero(known))
        return TrainIndex(tp.ids, truth["landmark_id"].to_numpy(np.int64)[pos[known]], tp.embeddings)


def need_embeddings(obj, what) -> None:
    if getattr(obj, "embeddings", None) is None:
        raise KitError(f"{what}: has no embeddings (run `kit predict` with a model that outputs them)")
