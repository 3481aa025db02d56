"""Class subsets and stratified folds for GLDv2's train.csv -> folds CSV `id,landmark_id,label,fold`.

Classes: the K most frequent (ties: landmark_id ascending) or all with >= N images (report 001:
top-2k, each >= 183 images; top-18k, each >= 50). `label` is contiguous 0..C-1 in ascending
landmark_id order.

Folds are stratified and NESTED: within each class, rows are put in a seeded order (a hash of the
image id) and row r of class c gets fold (r + o_c) mod F, o_c a seeded hash of the landmark id. Every
class is split as evenly as possible (fold sizes differ by at most 1; a class with fewer images than
folds lands in fewer folds), the folds overall are balanced up to the random offsets, and an image's
fold depends only on its own class, never on which other classes are kept: the top-2k file's fold 0
is a subset of the top-18k file's fold 0, so models trained on either can be validated (and
ensembled) on one common fold without leakage. sklearn's StratifiedKFold allocates the same way per
class but neither nests nor scales: it takes minutes on GLDv2's 18k-class subset (bench/gap_folds.py).

`--holdout` is report 001's 90/6/4 split: the same class-sorted order walks a 50-slot pattern of
45 train (fold 1), 3 val (fold 0) and 2 holdout (fold -1) slots, interleaved as evenly as
possible, so every class with >= 50 images gets exactly 90/6/4 per 50 images and small classes
get a window of the pattern (mostly train) while the totals stay 90/6/4.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kit.errors import KitError
from kit.idbytes import arrow_id_bytes, fnv1a_bytes
from kit.io import atomic_path, clean_ids, read_csv

HOLDOUT_SHARES = {1: 45, 0: 3, -1: 2}  # per 50 images: train / val / holdout (report 001: 90/6/4)


def _check_landmark_ids(path, col: pd.Series, none_ok: bool = False) -> np.ndarray:
    """landmark_id column -> int64 array, or KitError naming the first bad data row (1-based).
    none_ok: -1 (non-landmark, in truth files) is allowed."""
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
    """train.csv (or any id,landmark_id CSV) -> DataFrame[id (str), landmark_id (int64)]; other columns
    are dropped. Ids are stripped; blank, unsafe or duplicate ids and bad landmark ids are KitErrors
    naming the row (none_ok: landmark_id -1 = non-landmark allowed, for truth files)."""
    read_csv(path, required=("id", "landmark_id"), nrows=0)
    df = _default_read(path)
    if df is None:  # ids the default types would mangle (all digits, "NA"), blanks, non-integer landmark ids
        df = read_csv(path, usecols=["id", "landmark_id"], dtype={"id": str}, keep_default_na=False)
    if df.empty:
        raise KitError(f"{path}: no data rows (only a header)")
    df["id"] = clean_ids(path, df["id"])  # stripped; blank, unsafe or duplicate ids are errors
    df["landmark_id"] = _check_landmark_ids(path, df["landmark_id"], none_ok)
    return df


def _default_read(path) -> pd.DataFrame | None:
    """id and landmark_id by pandas' C parser with its default types, every column read: the cost of a bare
    pd.read_csv (pandas 3 keeps string ids as Arrow strings; usecols, dtype={"id": str} or pyarrow's threaded
    reader measured 1.3-4x slower on GLDv2's 4.1M rows here). None unless that gave string ids with no
    missing value and integer landmark ids: then the caller re-reads with the exact, slower parser."""
    import warnings

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
    return pd.DataFrame({"id": _one_chunk(ids), "landmark_id": lid})


def _one_chunk(ids: pd.Series) -> pd.Series:
    """Arrow-backed ids in one chunk (pandas' parallel reader leaves ~100): the id checks and the fold hash
    then view the bytes in place instead of each copying them (kit.idbytes.arrow_id_bytes)."""
    try:
        import pyarrow as pa

        arr = ids.array.__arrow_array__()
        if not isinstance(arr, pa.ChunkedArray) or arr.num_chunks <= 1:
            return ids
        return pd.Series(type(ids.array)(pa.chunked_array([arr.combine_chunks()]), dtype=ids.dtype), name=ids.name)
    except (ImportError, AttributeError, TypeError, ValueError):
        return ids


def read_clean(path) -> pd.DataFrame:
    """GLDv2-clean CSV (landmark_id, images = space-separated ids) -> DataFrame[id, landmark_id]."""
    df = read_csv(path, required=("landmark_id", "images"), dtype={"images": str}, keep_default_na=False)
    lid = _check_landmark_ids(path, df["landmark_id"])
    ids = df["images"].str.split()
    out = pd.DataFrame({"landmark_id": lid, "id": ids}).explode("id").dropna(subset=["id"])
    return out[["id", "landmark_id"]].reset_index(drop=True)


def restrict_to_clean(train: pd.DataFrame, clean: pd.DataFrame, path="clean csv") -> pd.DataFrame:
    """Keep train rows whose id is listed in the clean CSV; a listed id under another landmark is an error."""
    from kit.metrics import index_in

    pos = index_in(_arrow_or_object(train["id"]), _arrow_or_object(clean["id"]))  # first listing of each id
    kept = train[pos >= 0]
    clean_lid = clean["landmark_id"].to_numpy()[pos[pos >= 0]]
    bad = kept["landmark_id"].to_numpy() != clean_lid
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise KitError(f"{path}: image {kept['id'].iloc[i]} is listed under landmark {clean_lid[i]}, "
                       f"train.csv says {kept['landmark_id'].iloc[i]}")
    return kept.reset_index(drop=True)


def _arrow_or_object(ids: pd.Series):
    """The id column as one pyarrow string array when it is arrow-backed (no Python strings built), else
    an object array (kit.metrics.index_in takes both)."""
    try:
        import pyarrow as pa

        arr = ids.array.__arrow_array__()
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            return arr.cast(pa.string())
        return ids.to_numpy(dtype=object)
    except (ImportError, AttributeError, TypeError, ValueError):
        return ids.to_numpy(dtype=object)


def _class_counts(landmark_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """= np.unique(landmark_ids, return_counts=True), by bincount (no sort) when the ids are small ints."""
    if landmark_ids.dtype.kind in "iu" and len(landmark_ids) and landmark_ids.min() >= 0 \
            and landmark_ids.max() <= 4 * len(landmark_ids) + 2**20:
        counts = np.bincount(landmark_ids)
        uniq = np.flatnonzero(counts)
        return uniq.astype(landmark_ids.dtype), counts[uniq]
    return np.unique(landmark_ids, return_counts=True)


def select_classes(landmark_ids: np.ndarray, top: int | None = None, min_images: int | None = None) -> np.ndarray:
    """Kept landmark ids (ascending): the `top` most frequent (ties: landmark_id ascending) or all with >= min_images."""
    if (top is None) == (min_images is None):
        raise KitError("folds: give exactly one of --top K or --min-images N")
    if top is not None and top <= 0:
        raise KitError(f"folds: --top must be > 0 (got {top})")
    if min_images is not None and min_images <= 0:
        raise KitError(f"folds: --min-images must be > 0 (got {min_images})")
    uniq, counts = _class_counts(np.asarray(landmark_ids))
    if top is not None:
        return np.sort(uniq[np.lexsort((uniq, -counts))[:top]])
    return uniq[counts >= min_images]


def _seeded_hash(values, seed: int) -> np.ndarray:
    """A uint64 hash of each value (string ids or ints) keyed by the seed: vectorised FNV-1a over the
    bytes of the ids, then a splitmix64 finaliser with the seed mixed in (stable across runs/platforms)."""
    cols = arrow_id_bytes(values)
    a = np.asarray(values) if cols is None else None
    if cols is None and a.dtype.kind in "OUS":
        try:
            b = np.ascontiguousarray(a.astype("S"))
        except UnicodeEncodeError:  # non-ASCII ids: encode explicitly (slower, same idea)
            b = np.ascontiguousarray(np.char.encode(a.astype(str), "utf-8"))
        cols = b.view(np.uint8).reshape(len(b), -1)
    if cols is not None:
        h = fnv1a_bytes(cols)
    else:
        h = a.astype(np.uint64)
    h = h ^ np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _lexsort_class_hash(labels: np.ndarray, row_hash: np.ndarray, n_classes: int) -> np.ndarray:
    """= np.lexsort((row_hash, labels)) (stable), ~4x faster on millions of rows: one np.sort of uint64
    keys packing (class, top bits of the hash, row), then the rare runs of equal (class, hash bits)
    re-sorted exactly by (full hash, row)."""
    n = len(labels)
    lbits, rbits = max(1, int(n_classes - 1).bit_length()), max(1, int(n - 1).bit_length())
    hbits = 64 - lbits - rbits
    if hbits < 8:  # too many rows/classes to pack: argsort of (class, hash bits), rows kept apart
        rbits, hbits = 0, 64 - lbits
    u = np.uint64
    key = (labels.astype(u) << u(64 - lbits)) | ((row_hash >> u(64 - hbits)) << u(rbits))
    if rbits:
        key |= np.arange(n, dtype=u)
        key.sort()
        order = (key & u((1 << rbits) - 1)).astype(np.int64)
        prefix = key >> u(rbits)
    else:
        order = np.argsort(key)
        prefix = key[order]
    eq = prefix[1:] == prefix[:-1]
    if eq.any():  # equal prefixes form runs: order each run by (full hash, row), as the stable lexsort does
        tie = np.zeros(n, bool)
        tie[1:] |= eq
        tie[:-1] |= eq
        pos = np.flatnonzero(tie)
        rows = order[pos]
        order[pos] = rows[np.lexsort((rows, row_hash[rows], prefix[pos]))]
    return order


def _class_sorted_positions(labels: np.ndarray, n_classes: int, seed: int, ids=None,
                            landmark_ids=None) -> np.ndarray:
    """Per row: its rank within its class (seeded order by id hash) plus a seeded per-class offset.

    Depends only on (seed, the row's class, the ids of that class), not on the other classes kept.
    """
    ids = np.arange(len(labels)) if ids is None else ids
    keys = labels if landmark_ids is None else landmark_ids
    row_hash = _seeded_hash(ids, seed)
    order = _lexsort_class_hash(labels, row_hash, n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - starts[labels[order]]
    keys = np.asarray(keys)
    class_keys = np.zeros(n_classes, keys.dtype)
    class_keys[labels] = keys  # one key per class (hash C keys, not N rows) unless a class has several
    per_class = bool((class_keys[labels] == keys).all())
    offset = (_seeded_hash(class_keys if per_class else keys, seed + 1) % np.uint64(1 << 31)).astype(np.int64)
    offset = offset[labels] if per_class else offset
    return rank + offset


def assign_folds(labels: np.ndarray, n_folds: int, seed: int = 0, ids=None, landmark_ids=None) -> np.ndarray:
    """Stratified fold 0..F-1 per row (labels: contiguous class indices). See module docstring."""
    if n_folds < 2:
        raise KitError(f"folds: --n-folds must be >= 2 (got {n_folds})")
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    return (_class_sorted_positions(labels, n_classes, seed, ids, landmark_ids) % n_folds).astype(np.int8)


def holdout_pattern(shares: dict = HOLDOUT_SHARES) -> np.ndarray:
    """Cycle of split codes with the given counts, interleaved by largest-deficit (like Bresenham)."""
    total = sum(shares.values())
    codes = list(shares)
    done = dict.fromkeys(codes, 0)
    out = []
    for step in range(1, total + 1):
        code = max(codes, key=lambda c: shares[c] * step / total - done[c])  # ties: first listed
        done[code] += 1
        out.append(code)
    return np.array(out, dtype=np.int8)


def assign_holdout(labels: np.ndarray, seed: int = 0, ids=None, landmark_ids=None) -> np.ndarray:
    """Report 001's split per row: 1 = train (90%), 0 = val (6%), -1 = holdout (4%), stratified by class."""
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    pattern = holdout_pattern()
    return pattern[_class_sorted_positions(labels, n_classes, seed, ids, landmark_ids) % len(pattern)]


def make_folds(train: pd.DataFrame, top: int | None = None, min_images: int | None = None,
               n_folds: int = 5, holdout: bool = False, seed: int = 0) -> pd.DataFrame:
    """train (id, landmark_id) -> folds frame id, landmark_id, label, fold (input row order kept)."""
    lid = train["landmark_id"].to_numpy(dtype=np.int64)
    kept = select_classes(lid, top, min_images)
    if len(kept) == 0:
        raise KitError(f"folds: no class has >= {min_images} images")
    if len(lid) and lid.min() >= 0 and lid.max() <= 4 * len(lid) + 2**20:  # small ids (GLDv2's): a lookup table
        table = np.full(int(lid.max()) + 1, -1, np.int64)
        table[kept] = np.arange(len(kept))
        label = table[lid]
    else:  # no table sized by the largest id
        pos = np.minimum(np.searchsorted(kept, lid), len(kept) - 1)
        label = np.where(kept[pos] == lid, pos, -1)
    if (label >= 0).all():  # every class kept (--min-images 1): no copy of the ids
        ids = train["id"].reset_index(drop=True)
    else:
        rows = np.flatnonzero(label >= 0)
        label, lid, ids = label[rows], lid[rows], train["id"].iloc[rows].reset_index(drop=True)
    keys = dict(ids=ids, landmark_ids=lid)  # the Series: its arrow bytes are hashed in place
    fold = assign_holdout(label, seed, **keys) if holdout else assign_folds(label, n_folds, seed, **keys)
    return pd.DataFrame({"id": ids, "landmark_id": lid, "label": label, "fold": fold})


def write_folds(folds: pd.DataFrame, path) -> None:
    """Write the folds CSV atomically: pyarrow's writer (~7x pandas' to_csv on millions of rows) on slices of
    the table in 2 threads (Arrow releases the GIL: 0.47 -> 0.30 s for 4.1M rows on 2 cores), written in
    order; pandas' to_csv, same bytes, without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        with atomic_path(path) as tmp:
            folds[["id", "landmark_id", "label", "fold"]].to_csv(tmp, index=False)
        return
    from concurrent.futures import ThreadPoolExecutor

    table = pa.Table.from_pandas(folds[["id", "landmark_id", "label", "fold"]], preserve_index=False)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")

    def text(part):
        out = pa.BufferOutputStream()
        pacsv.write_csv(part, out, options)
        return out.getvalue()

    n, k = len(table), 4 if len(table) >= 100_000 else 1
    parts = [table.slice(i * n // k, (i + 1) * n // k - i * n // k) for i in range(k)]
    try:
        with ThreadPoolExecutor(min(2, k)) as pool:
            chunks = list(pool.map(text, parts))
    except pa.ArrowInvalid as e:
        raise KitError(f"{path}: cannot write folds (an id needs CSV quoting?): {e}") from None
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(b"id,landmark_id,label,fold\n")
        for chunk in chunks:
            f.write(chunk)


def fold_summary(folds: pd.DataFrame, n_train_rows: int) -> str:
    """Human summary: classes, images, images per class, rows per fold."""
    per_class = np.bincount(folds["label"].to_numpy())
    per_fold = folds["fold"].value_counts().sort_index()
    fold_txt = ", ".join(f"{int(k)}: {int(v)}" for k, v in per_fold.items())
    return "\n".join([
        f"classes kept: {len(per_class)}  images: {len(folds)} of {n_train_rows}",
        f"images per class: min {per_class.min()}  median {int(np.median(per_class))}  max {per_class.max()}",
        f"rows per fold: {fold_txt}",
    ])
