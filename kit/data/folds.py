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

import itertools

import numpy as np
import pandas as pd

from kit.data.train_csv import one_arrow_chunk, read_clean, read_train_unchecked, restrict_to_clean
from kit.errors import KitError
from kit.idbytes import arrow_id_bytes, fnv1a_bytes
from kit.io import atomic_path, clean_ids, write_chunks

HOLDOUT_SHARES = {1: 45, 0: 3, -1: 2}  # per 50 images: train / val / holdout (report 001: 90/6/4)
BLOCK = 1 << 16  # rows per block of the whole-column passes: scratch stays in cache, no fresh 33 MB temporaries


def folds_from_csv(train_csv, clean_csv=None, top: int | None = None, min_images: int | None = None,
                   n_folds: int = 5, holdout: bool = False, seed: int = 0) -> tuple[pd.DataFrame, int]:
    """`kit folds`: train.csv (+ GLDv2-clean CSV) -> (folds frame, rows read) = make_folds(restrict_to_clean(
    read_train(train_csv), read_clean(clean_csv))). read_train's id checks run in a second thread while the folds
    are made from the ids as read (-0.15 s at GLDv2 size on 2 cores); they raise the same errors, and ids they
    had to strip are folded again, so the result is read_train's in every case."""
    from concurrent.futures import ThreadPoolExecutor

    def folds(t: pd.DataFrame) -> pd.DataFrame:
        return make_folds(restrict_to_clean(t, clean, clean_csv) if clean is not None else t,
                          top, min_images, n_folds, holdout, seed)

    with ThreadPoolExecutor(1) as pool:  # one helper: the clean CSV beside train.csv, then the id checks beside the folds
        clean_read = pool.submit(read_clean, clean_csv) if clean_csv else None
        train = read_train_unchecked(train_csv)  # its errors first, as when the files were read in turn
        clean = clean_read.result() if clean_read else None
        if clean_csv:  # restrict_to_clean's lookup and row filter are faster on one chunk (see one_arrow_chunk)
            train["id"] = one_arrow_chunk(train["id"])
        raw = train["id"]  # clean_ids returns this object itself when no id needs a change
        checked = pool.submit(clean_ids, train_csv, raw)
        try:
            out = folds(train)
        except KitError:  # raised again below from the checked ids, unless an id error comes first
            out = None
        ids = checked.result()  # a bad id: read_train's error
    if out is None or ids is not raw:  # stripped ids: fold what read_train returns
        out = folds(train.assign(id=ids))
    return out, len(train)


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
    h = fnv1a_bytes(cols) if cols is not None else a.astype(np.uint64)  # a new array either way: mixed in place
    _splitmix_inplace(h, np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF))
    return h


def _splitmix_inplace(h: np.ndarray, key: np.uint64, block: int = BLOCK) -> None:
    """h = splitmix64 finaliser of (h ^ key), in place, in cache-sized blocks with one small scratch array
    (whole-column expressions allocate ~5 arrays of N; fresh pages cost ~2.5 ms/MB on this VM)."""
    tmp = np.empty(min(len(h), block), np.uint64)
    for a in range(0, len(h), block):
        x = h[a:a + block]
        t = tmp[:len(x)]
        x ^= key
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, 0)):
            np.right_shift(x, np.uint64(shift), out=t)
            x ^= t
            if mult:
                x *= np.uint64(mult)


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
    key = labels.astype(u)
    block, tmp = BLOCK, np.empty(min(n, BLOCK), u)
    for a in range(0, n, block):  # key = class | hash bits | row, in blocks: no N-sized temporaries
        k, t = key[a:a + block], tmp[:min(block, n - a)]
        k <<= u(64 - lbits)
        np.right_shift(row_hash[a:a + block], u(64 - hbits), out=t)
        t <<= u(rbits)
        k |= t
        if rbits:
            k |= np.arange(a, a + len(k), dtype=u)
    if rbits:
        key.sort()
        eq = np.empty(max(n - 1, 0), bool)
        for a in range(0, n - 1, block):  # same (class, hash bits) as the next key: they differ in the row bits only
            x, t = key[a:a + block + 1], tmp[:min(block, n - 1 - a)]
            np.bitwise_xor(x[1:], x[:-1], out=t)
            np.less(t, u(1 << rbits), out=eq[a:a + len(t)])
    else:
        order = np.argsort(key)
        key = key[order]
        eq = key[1:] == key[:-1]
    pos = None
    if eq.any():  # equal prefixes form runs: order each run by (full hash, row), as the stable lexsort does
        tie = np.zeros(n, bool)
        tie[1:] |= eq
        tie[:-1] |= eq
        pos = np.flatnonzero(tie)
        prefix = key[pos] >> u(rbits)
    if rbits:
        key &= u((1 << rbits) - 1)  # the rows, in place
        order = key.view(np.int64)  # rows < 2**63: the same values
    if pos is not None:
        rows = order[pos]
        order[pos] = rows[np.lexsort((rows, row_hash[rows], prefix))]
    return order


def _class_cycle_positions(labels: np.ndarray, n_classes: int, seed: int, cycle: int, ids=None,
                           landmark_ids=None) -> np.ndarray:
    """Per row: (its rank within its class, in a seeded order by id hash, plus a seeded per-class offset) mod
    `cycle`. Depends only on (seed, the row's class, the ids of that class), not on the other classes kept.
    Computed in class-sorted order and scattered back once, as int8 when the cycle allows (cache-friendly)."""
    ids = np.arange(len(labels)) if ids is None else ids
    keys = labels if landmark_ids is None else landmark_ids
    row_hash = _seeded_hash(ids, seed)
    order = _lexsort_class_hash(labels, row_hash, n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keys = np.asarray(keys)
    class_keys = np.zeros(n_classes, keys.dtype)
    class_keys[labels] = keys  # one key per class (hash C keys, not N rows) unless a class has several
    n, block = len(labels), BLOCK
    small = np.int8 if cycle <= 127 else np.int64  # base: (class offset - class start) mod cycle, per sorted row
    if all((class_keys[labels[a:a + block]] == keys[a:a + block]).all() for a in range(0, n, block)):
        offset = (_seeded_hash(class_keys, seed + 1) % np.uint64(1 << 31)).astype(np.int64)
        base = np.repeat(((offset - starts) % cycle).astype(small), counts)  # labels[order]: classes in order
    else:
        offset = (_seeded_hash(keys, seed + 1) % np.uint64(1 << 31)).astype(np.int64)
        base = ((offset[order] - np.repeat(starts, counts)) % cycle).astype(small)
    for a in range(0, n, block):  # + the sorted position, mod cycle, in blocks: no N-sized int64 temporaries
        b = base[a:a + block]
        b[:] = (b + np.arange(a, a + len(b))) % cycle
    out = np.empty(n, small)
    out[order] = base
    return out


def assign_folds(labels: np.ndarray, n_folds: int, seed: int = 0, ids=None, landmark_ids=None) -> np.ndarray:
    """Stratified fold 0..F-1 per row (labels: contiguous class indices). See module docstring."""
    if n_folds < 2:
        raise KitError(f"folds: --n-folds must be >= 2 (got {n_folds})")
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    return _class_cycle_positions(labels, n_classes, seed, n_folds, ids, landmark_ids).astype(np.int8)


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
    return pattern[_class_cycle_positions(labels, n_classes, seed, len(pattern), ids, landmark_ids)]


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
    if (label >= 0).all():  # every class kept (--min-images 1): the input's columns, not copies (copy-on-write)
        ids = train["id"].reset_index(drop=True)
        lid_col = train["landmark_id"].astype(np.int64).reset_index(drop=True)
    else:
        rows = np.flatnonzero(label >= 0)
        label, lid, ids = label[rows], lid[rows], train["id"].iloc[rows].reset_index(drop=True)
        lid_col = lid
    keys = dict(ids=ids, landmark_ids=lid)  # the Series: its arrow bytes are hashed in place
    fold = assign_holdout(label, seed, **keys) if holdout else assign_folds(label, n_folds, seed, **keys)
    # copy=False: no 2 x 33 MB stacked copy of the int columns; label and fold are this function's own arrays
    return pd.DataFrame({"id": ids, "landmark_id": lid_col, "label": label, "fold": fold}, copy=False)


def write_folds(folds: pd.DataFrame, path) -> None:
    """Write the folds CSV atomically: pyarrow's writer (~7x pandas' to_csv on millions of rows) on parts of
    32k rows (~1 MB of text: buffers the allocator reuses, not fresh pages; GLDv2's 4.1M rows in 8 parts took
    0.38-0.59 s, in 126 parts 0.27-0.33 s) made in 2 threads (Arrow releases the GIL), each written to the file
    as soon as it and those before it are ready (write_chunks); pandas' to_csv, same bytes, without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        with atomic_path(path) as tmp:
            folds[["id", "landmark_id", "label", "fold"]].to_csv(tmp, index=False)
        return
    from concurrent.futures import ThreadPoolExecutor  # already imported by folds_from_csv; joblib costs ~27 ms

    table = pa.Table.from_pandas(folds[["id", "landmark_id", "label", "fold"]], preserve_index=False)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")

    def text(part):
        out = pa.BufferOutputStream()
        pacsv.write_csv(part, out, options)
        return out.getvalue()

    n = len(table)
    k = max(1, n // 32768)
    parts = [table.slice(i * n // k, (i + 1) * n // k - i * n // k) for i in range(k)]
    with ThreadPoolExecutor(min(2, k)) as pool:
        try:  # map yields in order; later parts are formatted meanwhile
            write_chunks(path, itertools.chain([b"id,landmark_id,label,fold\n"], pool.map(text, parts)))
        except pa.ArrowInvalid as e:
            raise KitError(f"{path}: cannot write folds (an id needs CSV quoting?): {e}") from None


def fold_summary(folds: pd.DataFrame, n_train_rows: int) -> str:
    """Human summary: classes, images, images per class, rows per fold."""
    per_class = np.bincount(folds["label"].to_numpy())
    per_fold = folds["fold"].value_counts().sort_index()  # pandas' hash count on the int8 column: 0.009 s at 4.1M rows
    fold_txt = ", ".join(f"{v}: {int(c)}" for v, c in per_fold.items())
    return "\n".join([
        f"classes kept: {len(per_class)}  images: {len(folds)} of {n_train_rows}",
        f"images per class: min {per_class.min()}  median {int(np.median(per_class))}  max {per_class.max()}",
        f"rows per fold: {fold_txt}",
    ])
