"""Submission and solution files: the one reader/writer/validator for Kaggle's `id,landmarks` CSVs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kit.errors import KitError
from kit.atomic import write_csv
from kit.csvfiles import read_csv
from kit.ids import first_duplicate, safe_ids as unsafe_free
from kit.metrics import index_in
from kit.predictions import Predictions


def _where(path, i: int) -> str:
    """'PATH: row N (line N+1)' for 0-based data row i."""
    return f"{path}: row {i + 1} (line {i + 2})"


def _read_text_csv(path, required: tuple[str, ...]) -> pd.DataFrame:
    """All columns as strings, empty cells as '' (never NaN), so validation sees what the file holds."""
    df = read_csv(path, required=required, dtype=str, keep_default_na=False, na_filter=False)
    if df.empty:
        raise KitError(f"{path}: no data rows (only a header)")
    return df


def _check_ids(path, ids: np.ndarray, sample_ids=None) -> None:
    """ids (object array of stripped str): non-empty, unique, and exactly the sample's ids when given."""
    empty = ids == ""
    if empty.any():
        raise KitError(f"{_where(path, int(np.flatnonzero(empty)[0]))}: empty id")
    unsafe = np.flatnonzero(~unsafe_free(ids))
    if len(unsafe):
        raise KitError(f"{_where(path, int(unsafe[0]))}: id {ids[unsafe[0]][:80]!r} is not a safe file name")
    i = first_duplicate(ids)
    if i >= 0:
        first = int(np.flatnonzero(ids == ids[i])[0])
        raise KitError(f"{_where(path, i)}: duplicate id {ids[i]} (first at row {first + 1})")
    if sample_ids is not None:
        sample = np.asarray(sample_ids).astype(str).astype(object)
        pos = index_in(ids, sample)
        if (pos < 0).any():
            i = int(np.flatnonzero(pos < 0)[0])
            raise KitError(f"{_where(path, i)}: id {ids[i]} is not in sample_submission.csv")
        missing = np.bincount(pos, minlength=len(sample)) == 0
        if missing.any():
            raise KitError(f"{path}: {int(missing.sum())} id(s) of sample_submission.csv missing "
                           f"(first: {sample[missing][0]})")


def read_sample_ids(path) -> np.ndarray:
    """Test ids of a sample_submission.csv (id,landmarks)."""
    ids = _read_text_csv(path, ("id",))["id"].str.strip().to_numpy(dtype=object)
    _check_ids(path, ids)
    return ids.astype(str)


def read_submission(path, sample_ids=None) -> pd.DataFrame:
    """Read and validate a submission -> DataFrame[id, label (int64, -1 = empty), score (float64)]."""
    df = _read_text_csv(path, ("id", "landmarks"))
    ids = df["id"].str.strip().to_numpy(dtype=object)
    _check_ids(path, ids, sample_ids)
    cells = df["landmarks"].str.strip()
    has = (cells != "").to_numpy()
    parts = cells.str.partition(" ")  # label text, " ", score text
    lab_txt, rest = parts[0], parts[2].str.strip()
    bad = has & ((rest == "") | rest.str.contains(" ")).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise KitError(f"{_where(path, i)}: landmarks '{cells.iloc[i]}' is not '<landmark_id> <score>'")
    bad = has & ~lab_txt.str.fullmatch(r"\d+").to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise KitError(f"{_where(path, i)}: landmark id '{lab_txt.iloc[i]}' is not a non-negative integer")
    score = pd.to_numeric(rest.where(has, "0"), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(score)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise KitError(f"{_where(path, i)}: score '{rest.iloc[i]}' is not a finite number")
    label = pd.to_numeric(lab_txt.where(has, "-1")).to_numpy(dtype=np.int64)
    return pd.DataFrame({"id": ids, "label": label, "score": np.where(has, score, 0.0)})


def predictions_to_frame(pred: Predictions) -> pd.DataFrame:
    """Top-1 of a Predictions -> DataFrame[id, label, score] (score 0 where label -1)."""
    label, score = pred.top1
    score = np.where(label >= 0, score, 0.0).astype(np.float32)
    return pd.DataFrame({"id": pred.ids.astype(object), "label": label.astype(np.int64), "score": score})


def format_landmarks(label, score) -> np.ndarray:
    """'<label> <score>' or '' per row; shortest round-trip score repr, so reading back gives the same GAP."""
    label = np.asarray(label, dtype=np.int64)
    score = np.asarray(score)
    if not np.issubdtype(score.dtype, np.floating):
        score = score.astype(np.float64)
    has = label >= 0
    if not np.all(np.isfinite(score[has])):
        i = int(np.flatnonzero(has & ~np.isfinite(score))[0])
        raise KitError(f"submission: non-finite score {score[i]} at row {i + 1}")
    text = pd.Series(label.astype(str), dtype=object) + " " + pd.Series(score.astype(str), dtype=object)
    return np.where(has, text.to_numpy(dtype=object), "")


def write_submission(df_or_predictions, path) -> Path:
    """Write `id,landmarks` atomically from a DataFrame[id, label, score] or a Predictions (top-1)."""
    df = df_or_predictions
    if isinstance(df, Predictions):
        df = predictions_to_frame(df)
    missing = [c for c in ("id", "label", "score") if c not in df.columns]
    if missing:
        raise KitError(f"write_submission: frame lacks column(s) {', '.join(missing)}")
    ids = df["id"].astype(str).to_numpy(dtype=object)
    d = first_duplicate(ids)
    if d >= 0:
        raise KitError(f"write_submission: duplicate id {ids[d]}")
    out = pd.DataFrame({"id": ids,
                        "landmarks": format_landmarks(df["label"].to_numpy(), df["score"].to_numpy())})
    return write_csv(out, path)


def read_solution(path) -> pd.DataFrame:
    """Read a solution -> DataFrame[id, landmarks (list[int])] (+ `usage` if the file has Kaggle's Usage)."""
    df = _read_text_csv(path, ("id", "landmarks"))
    ids = df["id"].str.strip().to_numpy(dtype=object)
    _check_ids(path, ids)
    cells = df["landmarks"].str.strip()
    tokens = cells.str.split().explode()
    tokens = tokens[tokens.notna() & (tokens != "")]
    bad = ~tokens.str.fullmatch(r"\d+")
    if bad.any():
        i = int(bad.index[bad.to_numpy()][0])
        raise KitError(f"{_where(path, i)}: landmark id '{tokens[bad].iloc[0]}' is not a non-negative integer")
    landmarks = [[int(t) for t in c.split()] for c in cells.tolist()]
    out = pd.DataFrame({"id": ids, "landmarks": landmarks})
    usage_col = next((c for c in df.columns if c.lower() == "usage"), None)
    if usage_col is not None:
        out["usage"] = df[usage_col].str.strip().to_numpy(dtype=object)
    return out
