"""Small file helpers shared by every stage: atomic writes, the GLDv2 image layout, image decoding."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from kit.errors import KitError

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes[-1:]), dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs should get the user's usual mode
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **kw) -> Path:
    """Write a DataFrame as CSV atomically (no index)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kw)
    return Path(path)


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write JSON atomically, pretty-printed."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def image_path(root: str | os.PathLike, split: str, image_id: str) -> Path:
    """GLDv2 layout: ROOT/SPLIT/a/b/c/<id>.jpg, a/b/c the first three characters of the id."""
    image_id = str(image_id)
    return Path(root) / split / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"


def read_csv(path: str | os.PathLike, required: tuple[str, ...] = (), **kw) -> pd.DataFrame:
    """Read a CSV or raise KitError naming the file and the missing columns."""
    import pandas as pd

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


def decode_image(path: str | os.PathLike) -> np.ndarray | None:
    """RGB uint8 HxWx3, or None if the file is missing or cannot be decoded."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def find_image(data_dir: str | Path, image_id: str) -> Path:
    """The image of `image_id`: DATA/{test,train,distractors}/a/b/c, DATA/<id>.jpg or DATA/images/<id>.jpg."""
    tries = [image_path(data_dir, "test", image_id), image_path(data_dir, "train", image_id),
             image_path(data_dir, "distractors", image_id),
             Path(data_dir) / f"{image_id}.jpg", Path(data_dir) / "images" / f"{image_id}.jpg"]
    return next((p for p in tries if p.is_file()), tries[0])
