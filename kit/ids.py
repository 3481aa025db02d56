"""Image ids name files (DATA/train/a/b/c/<id>.jpg, cache entries): `SAFE_ID`, the one rule for a safe id, checked
for single ids (Python's `re`) and whole id columns (pandas' string methods: safe, stripped, unique)."""
from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

import numpy as np

from kit.errors import KitError

if TYPE_CHECKING:  # imported where used: `kit --help` and single-id checks need no pandas
    import pandas as pd

SAFE_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"  # plus: no ".." anywhere
_SAFE_ID = re.compile(SAFE_ID)
RULE = "1-200 of letters, digits, _ . -"


def is_safe_id(image_id: str) -> bool:
    return _SAFE_ID.fullmatch(image_id) is not None and ".." not in image_id


def check_id(image_id) -> str:
    """`image_id` as str if it is a safe file name, else KitError."""
    image_id = str(image_id)
    if not is_safe_id(image_id):
        raise KitError(f"image id {image_id[:80]!r} is not a safe file name ({RULE})")
    return image_id


def safe_file_stem(image_id) -> str:
    """A file name for `image_id`: the id itself when safe, else 'h' + sha1 hex of it (never a path)."""
    text = str(image_id)
    return text if is_safe_id(text) else "h" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _strings(ids) -> pd.Series:
    """ids (Series, array, list) as a pandas string Series (Arrow-backed with pyarrow: checks run in its kernels)."""
    import pandas as pd

    s = ids if isinstance(ids, pd.Series) else pd.Series(ids, copy=False)
    return s if isinstance(s.dtype, pd.StringDtype) else s.astype("string")


def safe_ids(ids) -> np.ndarray:
    """check_id over a column: a bool per id, True where it is a safe file name (False for missing)."""
    s = _strings(ids)
    ok = s.str.fullmatch(SAFE_ID) & ~s.str.contains("..", regex=False)
    return ok.fillna(False).to_numpy(bool)


def first_duplicate(ids) -> int:
    """Row of the first id that repeats an earlier one, or -1 (a count of distinct ids first: pandas' hash table)."""
    s = _strings(ids)
    return -1 if s.nunique(dropna=False) == len(s) else int(np.argmax(s.duplicated().to_numpy(bool)))


def clean_ids(path, ids: pd.Series, column: str = "id") -> pd.Series:
    """An id column stripped of surrounding whitespace (the same object when nothing changes); a blank, unsafe
    or duplicate id is a KitError naming the file, the 1-based data row and the value."""
    s, ok = ids, safe_ids(ids)
    if not ok.all():
        s = _strings(ids).str.strip()
        blank = (s.isna() | (s == "")).to_numpy(bool)
        if blank.any():
            i = int(np.argmax(blank))
            raise KitError(f"{path}: row {i + 1} (line {i + 2}): empty {column}")
        ok = safe_ids(s)
        if not ok.all():
            i = int(np.argmin(ok))
            raise KitError(f"{path}: row {i + 1} (line {i + 2}): {column} {s.iloc[i][:80]!r} is not a safe file "
                           f"name ({RULE})")
    i = first_duplicate(s)
    if i >= 0:
        first = int(np.argmax((s == s.iloc[i]).to_numpy(bool)))
        raise KitError(f"{path}: row {i + 1} (line {i + 2}): duplicate {column} {s.iloc[i]} "
                       f"(first at row {first + 1})")
    return s
