"""Local features and their on-disk cache per image id. An extractor (kit.localfeatures.EXTRACTORS) has `name`,
`config()` (hashed into the cache key) and `extract(uint8 RGB images) -> list[LocalFeatures]`, keypoints in its
working frame (`image_size`), so one RANSAC pixel threshold means the same at any photo resolution."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.atomic import atomic_path
from kit.ids import safe_file_stem
from kit.images import MAX_PIXELS, decode_image

log = logging.getLogger("kit.localfeatures")


@dataclass
class LocalFeatures:
    keypoints: np.ndarray    # float32 [n, 2] (x, y) in the extractor's working frame
    descriptors: np.ndarray  # float32 [n, d] L2-normalised
    scores: np.ndarray       # float32 [n] attention / response, for ranking keypoints

    def __len__(self) -> int:
        return len(self.keypoints)

    @staticmethod
    def empty(dim: int = 0) -> "LocalFeatures":
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, dim), np.float32), np.zeros(0, np.float32))


def save_features(feat: LocalFeatures, path: str | Path) -> Path:
    """One cache entry: an .npz written to a temp file and renamed, not fsynced (an entry lost in a power
    cut is extracted again; a half-written one is never read: see load_features)."""
    with atomic_path(path, durable=False) as tmp, open(tmp, "wb") as f:
        np.savez(f, keypoints=feat.keypoints, descriptors=feat.descriptors, scores=feat.scores)
    return Path(path)


def load_features(path: str | Path) -> LocalFeatures | None:
    """A cache entry, or None when it is broken (then it is extracted again): truncated or corrupt (the
    zip's sizes and CRC-32 are checked as it is read), not an .npz, or arrays of the wrong kind or shape."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            feat = LocalFeatures(z["keypoints"], z["descriptors"], z["scores"])
    except (OSError, ValueError, KeyError, EOFError, AttributeError, TypeError, zipfile.BadZipFile):
        return None  # AttributeError, TypeError: an .npy or a pickle, not an .npz (no context manager)
    n = len(feat.keypoints)
    if any(a.dtype != np.float32 for a in (feat.keypoints, feat.descriptors, feat.scores)) \
            or feat.keypoints.shape != (n, 2) or feat.descriptors.ndim != 2 or len(feat.descriptors) != n \
            or feat.scores.shape != (n,):
        return None
    return feat


def cache_key(extractor) -> str:
    """'<name>-<12 hex>' from the extractor config: a changed setting never reads stale features."""
    blob = json.dumps(extractor.config(), sort_keys=True, default=str).encode()
    return f"{extractor.name}-{hashlib.sha1(blob).hexdigest()[:12]}"


def resolve_cache_dir(cache_dir: str | Path | None) -> Path | None:
    """'auto' -> $KIT_CACHE_DIR, else $XDG_CACHE_HOME/kit, else ~/.cache/kit (never the source tree),
    + /localfeatures; None or 'none' -> no cache; anything else as given."""
    if cache_dir is None or str(cache_dir).lower() == "none":
        return None
    if str(cache_dir) != "auto":
        return Path(cache_dir)
    root = os.environ.get("KIT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kit"
    return Path(root) / "localfeatures"


def cache_path(cache_dir: str | Path, extractor, image_id: str) -> Path:
    """CACHE/<key>/<2 chars>/<stem>.npz; the stem is the id only when it is a safe file name, else a
    hash of it (kit.ids.safe_file_stem), so an id can never point outside the cache directory."""
    stem = safe_file_stem(image_id)
    return Path(cache_dir) / cache_key(extractor) / stem[:2] / f"{stem}.npz"


def cached_features(extractor, ids, paths, cache_dir: str | Path | None = None, batch_size: int = 16,
                    progress: bool = True, strict: bool = False,
                    max_pixels: int = MAX_PIXELS) -> dict[str, LocalFeatures]:
    """Features of every id (paths aligned with ids): cached ones read, the rest extracted and saved. A missing,
    undecodable or oversized image gets empty features (no landmark), uncached, in one warning (`strict`: error)."""
    from kit.progress import progress as progress_bar

    out: dict[str, LocalFeatures] = {}
    todo = []
    for image_id, path in dict(zip(map(str, ids), paths)).items():
        cp = cache_path(cache_dir, extractor, image_id) if cache_dir else None
        feat = load_features(cp) if cp is not None and cp.is_file() else None
        if feat is not None:
            out[image_id] = feat
        else:
            todo.append((image_id, path, cp))
    bad: list[str] = []
    side = int(getattr(extractor, "image_size", 0))  # its working size: a large JPEG is decoded at no less
    bar = progress_bar(total=len(todo), desc=f"{extractor.name} features", unit="img", disable=not progress or not todo)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        images = [decode_image(p, max_pixels, strict=strict, min_side=side) for _, p, _ in chunk]
        good = [i for i, img in enumerate(images) if img is not None]
        feats = extractor.extract([images[i] for i in good]) if good else []
        for i, feat in zip(good, feats):
            image_id, _, cp = chunk[i]
            out[image_id] = feat
            if cp is not None:
                save_features(feat, cp)
        for i in sorted(set(range(len(chunk))) - set(good)):
            out[chunk[i][0]] = LocalFeatures.empty()
            bad.append(str(chunk[i][1]))
        bar.update(len(chunk))
    bar.close()
    if bad:
        log.warning("%s: %d image(s) missing, undecodable or oversized: treated as no landmark (first: %s)",
                    extractor.name, len(bad), ", ".join(bad[:3]))
    return out
