"""Submission and solution files: the one reader/writer/validator for Kaggle's `id,landmarks` CSVs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit.atomic import write_csv
from kit.errors import KitError
from kit.csvfiles import read_csv
from kit.ids import first_duplicate, safe_ids as unsafe_free
from kit.metrics import index_in
from kit.predictions import Predictions


def _where(path, i: int) -> str:
    """'PATH: row N (line N+1)' for 0-based data row i."""
    return f"{path}: row {i + 1} (line {i + 2})"


def _fail_at(path, bad: np.ndarray, message) -> None:
    """KitError at the first row where `bad` holds, saying message(row)."""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise KitError(f"{_where(path, i)}: {message(i)}")


def _read_rows(path, required: tuple[str, ...], sample_ids=None) -> tuple[pd.DataFrame, np.ndarray]:
    """(every cell as the text the file holds, '' never NaN; the stripped ids), the ids checked: non-empty, safe,
    unique, and exactly the sample's ids when given."""
    df = read_csv(path, required=required, dtype=str, keep_default_na=False, na_filter=False)
    if df.empty:
        raise KitError(f"{path}: no data rows (only a header)")
    ids = df["id"].str.strip().to_numpy(dtype=object)
    _fail_at(path, ids == "", lambda i: "empty id")
    _fail_at(path, ~unsafe_free(ids), lambda i: f"id {ids[i][:80]!r} is not a safe file name")
    i = first_duplicate(ids)
    if i >= 0:
        first = int(np.flatnonzero(ids == ids[i])[0])
        raise KitError(f"{_where(path, i)}: duplicate id {ids[i]} (first at row {first + 1})")
    if sample_ids is not None:
        sample = np.asarray(sample_ids).astype(str).astype(object)
        pos = index_in(ids, sample)
        _fail_at(path, pos < 0, lambda i: f"id {ids[i]} is not in sample_submission.csv")
        missing = np.bincount(pos, minlength=len(sample)) == 0
        if missing.any():
            raise KitError(f"{path}: {int(missing.sum())} id(s) of sample_submission.csv missing "
                           f"(first: {sample[missing][0]})")
    return df, ids


def read_sample_ids(path) -> np.ndarray:
    """Test ids of a sample_submission.csv (id,landmarks)."""
    return _read_rows(path, ("id",))[1].astype(str)


def read_submission(path, sample_ids=None) -> pd.DataFrame:
    """Read and validate a submission -> DataFrame[id, label (int64, -1 = empty), score (float64)]."""
    df, ids = _read_rows(path, ("id", "landmarks"), sample_ids)
    cells = df["landmarks"].str.strip()
    has = (cells != "").to_numpy()
    parts = cells.str.partition(" ")  # label text, " ", score text
    lab_txt, rest = parts[0], parts[2].str.strip()
    _fail_at(path, has & ((rest == "") | rest.str.contains(" ")).to_numpy(),
             lambda i: f"landmarks '{cells.iloc[i]}' is not '<landmark_id> <score>'")
    _fail_at(path, has & ~lab_txt.str.fullmatch(r"\d+").to_numpy(),
             lambda i: f"landmark id '{lab_txt.iloc[i]}' is not a non-negative integer")
    score = pd.to_numeric(rest.where(has, "0"), errors="coerce").to_numpy(dtype=np.float64)
    _fail_at(path, ~np.isfinite(score), lambda i: f"score '{rest.iloc[i]}' is not a finite number")
    label = pd.to_numeric(lab_txt.where(has, "-1")).to_numpy(dtype=np.int64)
    return pd.DataFrame({"id": ids, "label": label, "score": np.where(has, score, 0.0)})


def predictions_to_frame(pred: Predictions) -> pd.DataFrame:
    """Top-1 of a Predictions -> DataFrame[id, label, score] (score 0 where label -1)."""
    label, score = pred.top1
    score = np.where(label >= 0, score, 0.0).astype(np.float32)
    return pd.DataFrame({"id": pred.ids.astype(object), "label": label.astype(np.int64), "score": score})


def write_submission(df_or_predictions, path) -> Path:
    """Write `id,landmarks` atomically from a DataFrame[id, label, score] or a Predictions (top-1); scores in their
    shortest round-trip repr, so reading the file back gives the same GAP."""
    df = df_or_predictions
    df = predictions_to_frame(df) if isinstance(df, Predictions) else df
    missing = [c for c in ("id", "label", "score") if c not in df.columns]
    if missing:
        raise KitError(f"write_submission: frame lacks column(s) {', '.join(missing)}")
    ids = df["id"].astype(str).to_numpy(dtype=object)
    d = first_duplicate(ids)
    if d >= 0:
        raise KitError(f"write_submission: duplicate id {ids[d]}")
    label, score = np.asarray(df["label"].to_numpy(), dtype=np.int64), df["score"].to_numpy()
    if not np.issubdtype(score.dtype, np.floating):
        score = score.astype(np.float64)
    has = label >= 0
    if not np.all(np.isfinite(score[has])):
        i = int(np.flatnonzero(has & ~np.isfinite(score))[0])
        raise KitError(f"submission: non-finite score {score[i]} at row {i + 1}")
    text = pd.Series(label.astype(str), dtype=object) + " " + pd.Series(score.astype(str), dtype=object)
    landmarks = np.where(has, text.to_numpy(dtype=object), "")
    return write_csv(pd.DataFrame({"id": ids, "landmarks": landmarks}), path)


def read_solution(path) -> pd.DataFrame:
    """Read a solution -> DataFrame[id, landmarks (list[int])] (+ `usage` if the file has Kaggle's Usage)."""
    df, ids = _read_rows(path, ("id", "landmarks"))
    tokens = [c.split() for c in df["landmarks"].tolist()]
    bad = np.array([not all(t.isdecimal() for t in row) for row in tokens], bool)
    _fail_at(path, bad, lambda i: f"landmark id '{next(t for t in tokens[i] if not t.isdecimal())}' "
                                  "is not a non-negative integer")
    out = pd.DataFrame({"id": ids, "landmarks": [[int(t) for t in row] for row in tokens]})
    usage_col = next((c for c in df.columns if c.lower() == "usage"), None)
    if usage_col is not None:
        out["usage"] = df[usage_col].str.strip().to_numpy(dtype=object)
    return out
