"""Local feature extractors behind one interface, and an on-disk cache of their output per image id.

An extractor has `name`, `config() -> dict` (what changes its output; hashed into the cache key) and
`extract(images: list[uint8 RGB HxWx3]) -> list[LocalFeatures]`, keypoints in the extractor's working
frame (the image resized to `image_size` on its longest side, or square for DELF), so one RANSAC pixel
threshold means the same whatever the photo's resolution.
EXTRACTORS: "delf" (attention-selected CNN features, kit.delf) and "sift" (OpenCV SIFT, weight-free,
RootSIFT optional). `cached_features` extracts only what the cache lacks, so a second run is nearly free.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.errors import KitError
from kit.io import atomic_path, decode_image


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
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, keypoints=feat.keypoints, descriptors=feat.descriptors, scores=feat.scores)
    return Path(path)


def load_features(path: str | Path) -> LocalFeatures:
    with np.load(path, allow_pickle=False) as z:
        return LocalFeatures(z["keypoints"], z["descriptors"], z["scores"])


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class SiftExtractor:
    """OpenCV SIFT on the grey image resized to `image_size` on its longest side; RootSIFT optional."""

    name = "sift"

    def __init__(self, image_size: int = 256, max_keypoints: int = 1000, rootsift: bool = True, **_):
        self.image_size, self.max_keypoints, self.rootsift = int(image_size), int(max_keypoints), bool(rootsift)

    def config(self) -> dict:
        return {"name": self.name, "image_size": self.image_size, "max_keypoints": self.max_keypoints,
                "rootsift": self.rootsift}

    def _one(self, img: np.ndarray) -> LocalFeatures:
        import cv2

        h, w = img.shape[:2]
        s = self.image_size / max(h, w)
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if s != 1:
            grey = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        kps, desc = cv2.SIFT_create(nfeatures=self.max_keypoints).detectAndCompute(grey, None)
        if desc is None or len(kps) == 0:
            return LocalFeatures.empty(128)
        desc = desc.astype(np.float32)
        if self.rootsift:  # Arandjelovic & Zisserman 2012: Hellinger kernel via L1-normalise + sqrt
            desc = np.sqrt(desc / np.maximum(desc.sum(1, keepdims=True), 1e-12))
        pts = np.array([k.pt for k in kps], np.float32)
        resp = np.array([k.response for k in kps], np.float32)
        return LocalFeatures(pts, l2n(desc).astype(np.float32), resp)

    def extract(self, images: list[np.ndarray]) -> list[LocalFeatures]:
        return [self._one(img) for img in images]


def _delf(**kw):
    from kit.delf import DelfExtractor

    return DelfExtractor(**kw)


EXTRACTORS = {"delf": _delf, "sift": SiftExtractor}


def build_extractor(name: str, **kw):
    if name not in EXTRACTORS:
        raise KitError(f"local features: unknown extractor '{name}' (valid: {', '.join(EXTRACTORS)})")
    return EXTRACTORS[name](**kw)


def cache_key(extractor) -> str:
    """'<name>-<12 hex>' from the extractor config: a changed setting never reads stale features."""
    blob = json.dumps(extractor.config(), sort_keys=True, default=str).encode()
    return f"{extractor.name}-{hashlib.sha1(blob).hexdigest()[:12]}"


def cache_path(cache_dir: str | Path, extractor, image_id: str) -> Path:
    image_id = str(image_id)
    return Path(cache_dir) / cache_key(extractor) / image_id[:2] / f"{image_id}.npz"


def cached_features(extractor, ids, paths, cache_dir: str | Path | None = None, batch_size: int = 16,
                    progress: bool = True) -> dict[str, LocalFeatures]:
    """Features of every id (paths aligned with ids); cached ones are read, the rest extracted and saved.

    A missing or unreadable image gets empty features (it cannot verify anything) and is not cached.
    """
    from tqdm import tqdm

    out: dict[str, LocalFeatures] = {}
    todo = []
    for image_id, path in dict(zip(map(str, ids), paths)).items():
        cp = cache_path(cache_dir, extractor, image_id) if cache_dir else None
        if cp is not None and cp.is_file():
            out[image_id] = load_features(cp)
        else:
            todo.append((image_id, path, cp))
    bar = tqdm(total=len(todo), desc=f"{extractor.name} features", unit="img", disable=not progress or not todo)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        images = [decode_image(p) for _, p, _ in chunk]
        good = [i for i, img in enumerate(images) if img is not None]
        feats = extractor.extract([images[i] for i in good]) if good else []
        for i, feat in zip(good, feats):
            image_id, _, cp = chunk[i]
            out[image_id] = feat
            if cp is not None:
                save_features(feat, cp)
        for i in set(range(len(chunk))) - set(good):
            out[chunk[i][0]] = LocalFeatures.empty()
        bar.update(len(chunk))
    bar.close()
    return out
