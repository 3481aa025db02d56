"""Ground truth and scoring summaries: the one reader of truth files (a solution CSV or any CSV with
`id,landmark_id`) and the one summary (GAP, top-1 accuracy, sensitivity/specificity) that `kit score`,
`kit filter`, the report and the benches print."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kit.predictions import Predictions

if TYPE_CHECKING:
    import pandas as pd


def load_truth(path: str | Path) -> pd.DataFrame:
    """Ground truth as DataFrame[id, landmarks(list[int])]: a solution CSV (`id,landmarks`) or any CSV
    with `id,landmark_id` (folds CSV, train.csv), e.g. for OOF predictions."""
    from kit.io import read_csv
    from kit.submission import read_solution

    path = Path(path)
    head = read_csv(path, nrows=0)
    if "landmarks" in head.columns:
        return read_solution(path)
    from kit.data.train_csv import read_train

    df = read_train(path, none_ok=True)  # ids stripped and checked, landmark ids integers >= -1
    df = df.assign(landmarks=[[int(x)] if x >= 0 else [] for x in df["landmark_id"]])[["id", "landmarks"]]
    df.attrs["from_labels"] = True
    return df


def truth_by_id(truth: pd.DataFrame) -> dict[str, tuple[int, ...]]:
    """id -> tuple of true landmark ids (() = non-landmark)."""
    return dict(zip(truth["id"].astype(str), (tuple(int(v) for v in ls) for ls in truth["landmarks"])))


def score_gap(pred: Predictions, truth: pd.DataFrame) -> float:
    """GAP of the top-1 predictions against `truth` (a `load_truth` frame). A truth from a folds/train
    CSV covers more ids than an OOF file predicts, so only the predicted ids are scored then; a
    solution CSV is used whole (its ids the predictions lack count as misses)."""
    from kit.metrics import gap_frames
    from kit.submission import predictions_to_frame

    return float(gap_frames(predictions_to_frame(pred), truth_for(pred, truth)))


def truth_for(pred: Predictions, truth: pd.DataFrame) -> pd.DataFrame:
    """The truth rows `score_gap` scores `pred` against: a truth from labels is cut to the predicted
    ids (done once when many predictions of the same ids are scored); a solution is used whole."""
    if not truth.attrs.get("from_labels", False):
        return truth
    cut = truth[truth["id"].isin(set(pred.ids))].copy()
    cut.attrs = {}
    return cut


def true_top1(pred: Predictions, truth: pd.DataFrame) -> np.ndarray:
    """One true label per row for kit.metrics.gap: the predicted label when the truth lists it (an image
    may show several landmarks), else its first landmark, else -1. Ids absent from the truth -> -1."""
    lookup = dict(zip(truth["id"].astype(str), truth["landmarks"]))
    out = np.full(len(pred), -1, np.int64)
    for i, (image_id, label) in enumerate(zip(pred.ids, pred.labels[:, 0])):
        lms = lookup.get(image_id) or []
        out[i] = label if label in lms else (lms[0] if lms else -1)
    return out


def gap_top1(pred: Predictions, true: np.ndarray) -> float:
    """GAP of the top-1 predictions against one true label per row (`true_top1`): the fast path filters
    use while sweeping thresholds."""
    from kit.metrics import gap

    return gap(pred.labels[:, 0], pred.scores[:, 0], true, pred.ids)


def summarize(sub: pd.DataFrame, sol: pd.DataFrame, passed: set | None = None) -> dict:
    """GAP, top-1 accuracy on landmark images and sensitivity/specificity (Mail.ru's offline test: landmark
    images kept / non-landmark images rejected) of a submission frame against a solution frame. With
    `passed` (ids that passed a filter), only those count as 'predicted landmark'."""
    from kit.metrics import gap_frames, match_frames, sensitivity_specificity

    m = match_frames(sub, sol)
    landmark = m["is_landmark"].to_numpy()
    predicted = m["label"].to_numpy() >= 0
    if passed is not None:
        predicted &= m["id"].isin(passed).to_numpy()
    sens, spec = sensitivity_specificity(predicted, landmark)
    acc = float(m["correct"].to_numpy()[landmark].mean()) if landmark.any() else 0.0
    return {"gap": float(gap_frames(sub, sol)), "accuracy": acc, "sensitivity": float(sens),
            "specificity": float(spec), "n": int(len(m)), "n_landmark": int(landmark.sum())}
