"""GLDv2's train.csv and GLDv2-clean CSV -> checked (id, landmark_id) frames: the readers every command shares."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from kit.csvfiles import read_csv
from kit.errors import KitError
from kit.ids import clean_ids
from kit.metrics import index_in


def _check_landmark_ids(path, col: pd.Series, none_ok: bool = False) -> np.ndarray:
    """landmark_id column -> int64 array, or KitError naming the first bad data row (1-based)."""
    low = -1 if none_ok else 0
    if pd.api.types.is_integer_dtype(col.dtype):
        values = col.to_numpy(dtype=np.int64)
        bad = values < low
    else:
        num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num) | (num != np.round(num)) | (num < low) | (np.abs(num) >= 2.0 ** 63)
        values = np.where(bad, 0, num).astype(np.int64)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = col.iloc[i]
        shown = "(empty)" if pd.isna(value) or str(value).strip() == "" else repr(value if isinstance(value, str) else value.item())
        raise KitError(f"{path}: row {i + 1} (line {i + 2}): landmark_id {shown} is not a non-negative integer")
    return values


def read_train(path, none_ok: bool = False) -> pd.DataFrame:
    """train.csv (any id,landmark_id CSV) -> DataFrame[id, landmark_id]; bad rows a KitError (none_ok: -1 allowed)."""
    read_csv(path, required=("id", "landmark_id"), nrows=0)
    df = _default_read(path)
    if df is None:  # ids the default types would mangle (all digits, "NA"), blanks, non-integer landmark ids
        df = read_csv(path, usecols=["id", "landmark_id"], dtype={"id": str}, keep_default_na=False)
    if df.empty:
        raise KitError(f"{path}: no data rows (only a header)")
    values = _check_landmark_ids(path, df["landmark_id"], none_ok)
    if df["landmark_id"].dtype != np.int64:  # int64 already: the column as read (no 33 MB copy at GLDv2 size)
        df["landmark_id"] = values
    df["id"] = clean_ids(path, df["id"])  # stripped; blank, unsafe or duplicate ids are errors
    return df


def _default_read(path) -> pd.DataFrame | None:
    """id and landmark_id by pandas' default parser (fastest measured); None unless ids are strings without gaps and
    landmark ids integers: then the caller re-reads with the exact, slower parser."""
    try:
        with warnings.catch_warnings():   # mixed-type chunks (DtypeWarning): caught by the checks below
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            df = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):  # malformed: the exact parser reports it
        return None
    ids, lid = df["id"], df["landmark_id"]
    if not (pd.api.types.is_string_dtype(ids.dtype) and pd.api.types.is_integer_dtype(lid.dtype)) or ids.isna().any():
        return None
    if ids.dtype == object and pd.api.types.infer_dtype(ids, skipna=False) != "string":  # pandas < 3: object
        return None                                                                    # column, checked in C
    return df[["id", "landmark_id"]]  # copy-on-write: the columns as read, no copy


def read_clean(path) -> pd.DataFrame:
    """GLDv2-clean CSV (landmark_id, images = space-separated ids) -> DataFrame[id, landmark_id]."""
    df = read_csv(path, required=("landmark_id", "images"), dtype={"images": str}, keep_default_na=False)
    lid = _check_landmark_ids(path, df["landmark_id"])
    fast = _split_ascii_ids(df["images"])
    if fast is not None:
        ids, cell = fast
        return pd.DataFrame({"id": ids, "landmark_id": lid[cell]})
    ids = df["images"].str.split()
    out = pd.DataFrame({"landmark_id": lid, "id": ids}).explode("id").dropna(subset=["id"])
    return out[["id", "landmark_id"]].reset_index(drop=True)


def _split_ascii_ids(images: pd.Series) -> tuple[pd.Series, np.ndarray] | None:
    """Split every cell by Arrow kernels -> (ids, row of each); None without pyarrow or for non-ASCII whitespace."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return None
    try:
        arr = pa.array(images.array) if len(images) else None
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    except (TypeError, ValueError, AttributeError, pa.ArrowException):
        return None
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)) or arr.null_count:
        return None
    data = np.frombuffer(arr.buffers()[2], np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    if data.size and (data.max() >= 0x80 or ((data >= 0x1C) & (data <= 0x1F)).any()):
        return None
    parts = pc.ascii_split_whitespace(arr)  # Arrow keeps "" before/after the outer whitespace: dropped below
    flat = parts.flatten()
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    cell = np.repeat(np.arange(len(arr)), pc.list_value_length(parts).to_numpy(zero_copy_only=False))[keep]
    ids = flat.filter(pa.array(keep)).cast(pa.large_string())
    return pd.Series(pd.arrays.ArrowStringArray(ids), name="id"), cell


def restrict_to_clean(train: pd.DataFrame, clean: pd.DataFrame, path="clean csv") -> pd.DataFrame:
    """Keep train rows whose id is listed in the clean CSV; a listed id under another landmark is an error."""
    pos = index_in(train["id"], clean["id"])  # first listing of each id
    kept = train[pos >= 0]
    clean_lid = clean["landmark_id"].to_numpy()[pos[pos >= 0]]
    bad = kept["landmark_id"].to_numpy() != clean_lid
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise KitError(f"{path}: image {kept['id'].iloc[i]} is listed under landmark {clean_lid[i]}, "
                       f"train.csv says {kept['landmark_id'].iloc[i]}")
    return kept.reset_index(drop=True)
