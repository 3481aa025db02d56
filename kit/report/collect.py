"""What a report reads: inputs, truth, prediction files, per-bucket scores and gallery rows (no HTML here)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kit.inference.search import SearchIndex
from kit.csvfiles import read_csv
from kit.metrics import accuracy, gap
from kit.predictions import Predictions, load_predictions
from kit.truth import load_truth, summarize, truth_by_id

MAILRU_RARE_BELOW = 100          # Mail.ru report, section 4: fewer than 100 images = "rare"
_FOLD_FILE = re.compile(r"^(oof|val|test|train)_fold(\d+)\.npz$")


@dataclass
class Inputs:
    """Everything the sections read; paths may be None or absent."""
    runs_dir: Path
    predictions_dir: Path
    ensembles_dir: Path
    exp: str | None = None
    data_dir: Path | None = None
    solution: Path | None = None
    folds: Path | None = None
    comparison: Path | None = None
    filtered: Path | None = None
    truth: dict[str, tuple[int, ...]] = field(default_factory=dict)   # id -> landmark ids (() = none)
    train_counts: pd.Series | None = None                              # landmark_id -> train images


def truth_and_counts(folds: Path | None, solution: Path | None) -> tuple[dict[str, tuple[int, ...]], pd.Series | None]:
    """id -> true landmark ids (folds CSV + solution), and training images per landmark_id (folds CSV)."""
    truth, counts = {}, None
    if folds is not None and Path(folds).is_file():
        df = read_csv(folds, required=("id", "landmark_id"), dtype={"id": str})
        truth.update(truth_by_id(load_truth(folds)))
        counts = df["landmark_id"].astype(np.int64).value_counts()
    if solution is not None and Path(solution).is_file():
        truth.update(truth_by_id(load_truth(solution)))
    return truth, counts


def rare_threshold(counts: pd.Series, rare_below: int = MAILRU_RARE_BELOW) -> tuple[int, str]:
    """(threshold, why): Mail.ru's rare = fewer than 100 train images, else the median when one bucket would be empty."""
    threshold, why = int(rare_below), f"Mail.ru split: rare = fewer than {rare_below} training images"
    if len(counts) and ((counts >= threshold).all() or (counts < threshold).all()):
        threshold = max(int(np.median(counts.to_numpy())), int(counts.min()) + 1)
        why = (f"every class is on one side of {rare_below} images here, so the median class count is the "
               f"threshold: rare = fewer than {threshold} training images")
    return threshold, why


def score_by_bucket(pred: Predictions, truth: dict, counts: dict, threshold: int) -> pd.DataFrame:
    """Scores of the ids with known truth: all, and landmark images of frequent / rare classes (class = first landmark)."""
    p = pred.subset(np.flatnonzero([i in truth for i in pred.ids]))
    label, score = p.top1
    true = [truth[i] for i in p.ids]
    first = np.array([t[0] if t else -1 for t in true], np.int64)
    is_lm = first >= 0
    s = summarize(pd.DataFrame({"id": p.ids, "label": label, "score": score}),
                  pd.DataFrame({"id": p.ids, "landmarks": [list(t) for t in true]}))
    rows = [{"bucket": "all", "classes": len(set(first[is_lm])), "images": len(p),
             "GAP": s["gap"] if is_lm.any() else np.nan, "top-1 acc": s["accuracy"] if is_lm.any() else np.nan,
             "sensitivity": s["sensitivity"], "specificity": s["specificity"]}]
    n_train = pd.Series(first).map(counts).fillna(0).to_numpy()
    for name, m in (("frequent", is_lm & (n_train >= threshold)), ("rare", is_lm & (n_train < threshold))):
        rows.append({"bucket": name, "classes": len(set(first[m])), "images": int(m.sum()),
                     "GAP": gap(label[m], score[m], first[m], p.ids[m]) if m.any() else np.nan,
                     "top-1 acc": accuracy(label[m], first[m]) if m.any() else np.nan,
                     "sensitivity": np.nan, "specificity": np.nan})
    return pd.DataFrame(rows)


def experiments(inp: Inputs) -> list[str]:
    if inp.exp:
        return [inp.exp]
    names = {p.name for d in (inp.runs_dir, inp.predictions_dir) if d.is_dir() for p in d.iterdir() if p.is_dir()}
    return sorted(names)


def fold_files(inp: Inputs, exp: str) -> dict[tuple[str, int], Path]:
    """(kind, fold) -> predictions/<exp>/<kind>_fold<N>.npz."""
    return {(m.group(1), int(m.group(2))): p for p in sorted((inp.predictions_dir / exp).glob("*.npz"))
            if (m := _FOLD_FILE.match(p.name))}


def filtered_file(inp: Inputs, exp: str) -> Path | None:
    """--filtered, else the newest prediction file whose name says it was filtered."""
    if inp.filtered is not None:
        return inp.filtered if inp.filtered.is_file() else None
    cands = [p for d in (inp.predictions_dir / exp, inp.ensembles_dir) if d.is_dir()
             for p in d.glob("*.npz") if re.search(r"filter|delf|sift|distractor|centroid_thr", p.stem)]
    return max(cands, key=lambda p: p.stat().st_mtime) if cands else None


@dataclass
class GalleryRow:
    id: str
    label: int
    score: float
    neighbours: list[tuple[str, int, float]]    # (train id, its landmark id, cosine similarity)


def spread_picks(scores: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """`n` of the `candidates` (row indices) spread evenly over their ranking by score, best first."""
    if n <= 0 or not len(candidates):
        return np.zeros(0, np.int64)
    ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
    return ranked[np.unique(np.linspace(0, len(ranked) - 1, min(n, len(ranked))).round().astype(int))]


def gallery_picks(test: Predictions, truth: dict, n: int) -> np.ndarray:
    """Test rows to show, spread over the score ranking: half landmark, half non-landmark where the truth is known."""
    scores = test.scores[:, 0]
    known = np.array([i in truth for i in test.ids], bool)
    if not known.any():
        return spread_picks(scores, np.arange(len(test)), n)
    landmark = np.flatnonzero(known & np.array([bool(truth.get(i)) for i in test.ids]))
    other = np.flatnonzero(known & ~np.isin(np.arange(len(test)), landmark))
    first = spread_picks(scores, landmark, max(n - min(len(other), n // 2), 0))
    picks = np.concatenate([first, spread_picks(scores, other, n - len(first))])
    return picks[np.argsort(-scores[picks], kind="stable")]


def gallery_rows(test: Predictions, train: Predictions, train_landmarks: dict, picks: np.ndarray,
                 k: int = 5) -> list[GalleryRow]:
    """Rows `picks` of the test predictions, each with its `k` nearest training images (cosine, SearchIndex)."""
    sims, idx = SearchIndex(train.embeddings).search(test.embeddings[picks], k)
    return [GalleryRow(test.ids[i], int(test.labels[i, 0]), float(test.scores[i, 0]),
                       [(train.ids[j], train_landmarks.get(train.ids[j], int(train.labels[j, 0])), float(s))
                        for s, j in zip(sims[r], idx[r]) if j >= 0])
            for r, i in enumerate(picks)]


def verdict(filtered: Predictions | None, image_id: str, label: int, score: float) -> str:
    """What the filter did to this id's top-1 prediction: kept, demoted, rejected (or no filter)."""
    if filtered is None:
        return "no filter file"
    if label < 0:
        return "no prediction"
    pos = np.flatnonzero(filtered.ids == image_id)
    if not len(pos):
        return "not filtered"
    flabel, fscore = int(filtered.labels[pos[0], 0]), float(filtered.scores[pos[0], 0])
    if flabel < 0:
        return "rejected (no landmark)"
    if flabel == label and fscore < score - 1e-6:
        return f"demoted to {fscore:.3f}"
    return f"kept ({flabel}, {fscore:.3f})"


def gallery_source(inp: Inputs) -> tuple[str, int, Predictions, Predictions] | None:
    """The first (exp, fold) with test and train prediction files that both hold embeddings."""
    for e in experiments(inp):
        files = fold_files(inp, e)
        for (kind, fold), path in files.items():
            if kind == "test" and ("train", fold) in files:
                test, train = load_predictions(path), load_predictions(files[("train", fold)])
                if test.embeddings is not None and train.embeddings is not None and len(test) and len(train):
                    return e, fold, test, train
    return None

