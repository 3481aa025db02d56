"""GLDv2's image folder layout: DATA/SPLIT/a/b/c/<id>.jpg, a/b/c the first three characters of the id."""
from __future__ import annotations

import os
from pathlib import Path

from kit.errors import KitError
from kit.ids import check_id


def image_path(root: str | os.PathLike, split: str, image_id: str) -> Path:
    """ROOT/SPLIT/a/b/c/<id>.jpg; KitError for an id shorter than 3 characters or not a safe file name."""
    image_id = check_id(image_id)
    if len(image_id) < 3:
        raise KitError(f"image id {image_id!r}: GLDv2 image paths need ids of at least 3 characters")
    return Path(root) / split / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"


def find_image(data_dir: str | Path, image_id: str) -> Path:
    """The image of `image_id`: DATA/{test,train,distractors}/a/b/c, DATA/<id>.jpg or DATA/images/<id>.jpg."""
    image_id = check_id(image_id)
    tries = [image_path(data_dir, split, image_id) for split in ("test", "train", "distractors")]
    tries += [Path(data_dir) / f"{image_id}.jpg", Path(data_dir) / "images" / f"{image_id}.jpg"]
    return next((p for p in tries if p.is_file()), tries[0])
