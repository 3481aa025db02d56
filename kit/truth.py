"""Ground truth and scoring summaries: the one reader of truth files and the one summary the commands print."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from kit.predictions import Predictions

if TYPE_CHECKING:
    import pandas as pd

KINDS = ("solution", "labels")


@dataclass(frozen=True)
class Truth:
    """Truth `frame` [id, landmarks]: a "solution" scores missing ids as misses, "labels" only the predicted ids."""
    frame: pd.DataFrame
    kind: Literal["solution", "labels"] = "solution"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"truth kind must be one of {KINDS} (got {self.kind!r})")


def as_truth(truth: Truth | pd.DataFrame) -> Truth:
    """A Truth as is; a bare frame [id, landmarks] is a solution."""
    return truth if isinstance(truth, Truth) else Truth(truth, "solution")


def load_truth(path: str | Path) -> Truth:
    """A solution CSV -> Truth("solution"); any `id,landmark_id` CSV (-1 = non-landmark) -> Truth("labels")."""
    from kit.csvfiles import read_csv
    from kit.submission import read_solution

    path = Path(path)
    if "landmarks" in read_csv(path, nrows=0).columns:
        return Truth(read_solution(path), "solution")
    from kit.data.train_csv import read_train

    df = read_train(path, none_ok=True)  # ids stripped and checked, landmark ids integers >= -1
    df = df.assign(landmarks=[[int(x)] if x >= 0 else [] for x in df["landmark_id"]])[["id", "landmarks"]]
    return Truth(df, "labels")


def truth_by_id(truth: Truth | pd.DataFrame) -> dict[str, tuple[int, ...]]:
    """id -> tuple of true landmark ids (() = non-landmark)."""
    frame = as_truth(truth).frame
    return dict(zip(frame["id"].astype(str), (tuple(int(v) for v in ls) for ls in frame["landmarks"])))


def score_gap(pred: Predictions, truth: Truth | pd.DataFrame) -> float:
    """GAP of the top-1 predictions against `truth` (see Truth for what each kind scores)."""
    from kit.metrics import gap_frames
    from kit.submission import predictions_to_frame

    return float(gap_frames(predictions_to_frame(pred), truth_for(pred, truth)))


def truth_for(pred: Predictions, truth: Truth | pd.DataFrame) -> pd.DataFrame:
    """The truth rows `score_gap` scores `pred` against: labels cut to the predicted ids, a solution whole."""
    truth = as_truth(truth)
    if truth.kind == "solution":
        return truth.frame
    return truth.frame[truth.frame["id"].isin(set(pred.ids))]


def true_top1(pred: Predictions, truth: Truth | pd.DataFrame) -> np.ndarray:
    """One true label per row: the predicted label if the truth lists it, else its first landmark, else -1."""
    lookup = truth_by_id(truth)
    out = np.full(len(pred), -1, np.int64)
    for i, (image_id, label) in enumerate(zip(pred.ids, pred.labels[:, 0])):
        lms = lookup.get(image_id, ())
        out[i] = label if label in lms else (lms[0] if lms else -1)
    return out


def gap_top1(pred: Predictions, true: np.ndarray) -> float:
    """GAP of the top-1 predictions against one true label per row (`true_top1`), for threshold sweeps."""
    from kit.metrics import gap

    return gap(pred.labels[:, 0], pred.scores[:, 0], true, pred.ids)


def summarize(sub: pd.DataFrame, sol: Truth | pd.DataFrame, passed: set | None = None) -> dict:
    """GAP, accuracy and sensitivity/specificity of a submission; with `passed` only those ids count as landmarks."""
    from kit.metrics import gap_frames, match_frames, sensitivity_specificity

    sol = as_truth(sol).frame
    m = match_frames(sub, sol)
    landmark = m["is_landmark"].to_numpy()
    predicted = m["label"].to_numpy() >= 0
    if passed is not None:
        predicted &= m["id"].isin(passed).to_numpy()
    sens, spec = sensitivity_specificity(predicted, landmark)
    acc = float(m["correct"].to_numpy()[landmark].mean()) if landmark.any() else 0.0
    return {"gap": float(gap_frames(sub, sol)), "accuracy": acc, "sensitivity": float(sens),
            "specificity": float(spec), "n": int(len(m)), "n_landmark": int(landmark.sum())}
