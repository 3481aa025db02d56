"""Reading CSV files: one error line naming the file and what is wrong, never a parser traceback."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from kit.errors import KitError


def read_csv(path: str | os.PathLike, required: tuple[str, ...] = (), **kw) -> pd.DataFrame:
    """Read a CSV or raise KitError naming the file and the missing columns."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise KitError(f"{path}: cannot parse CSV: {str(e).splitlines()[0]}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise KitError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")
    return df
