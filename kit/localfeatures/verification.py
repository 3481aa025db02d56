"""Pair verification: the one setting (which local features, how pairs are matched and counted) and the
one loop (features cached on disk per image, inlier counts cached per pair) that `kit rerank` and the
local-feature filters (`kit filter sift|delf`) share.

The defaults are the re-rank's, measured best on real photos (bench/real.py): RootSIFT at 512 px (the
photos' native size there), 1000 keypoints, Lowe's ratio 0.9 with mutual nearest neighbours, a homography
fitted by MAGSAC with an 8 px threshold. A looser ratio keeps more true matches on small photos and
MAGSAC keeps the chance inliers of unrelated pairs low, so the counts separate classes better than ratio
0.8 + affine RANSAC at 256 px.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np

from kit.atomic import atomic_path
from kit.layout import find_image
from kit.localfeatures import EXTRACTORS
from kit.localfeatures import base
from kit.localfeatures.base import cache_key, resolve_cache_dir
from kit.localfeatures.matching import verify_pairs
from kit.registry import Registry

VERIFIERS = Registry("verifier", {
    "sift": {"extractor": "sift", "image_size": 512, "max_keypoints": 1000},
    "delf": {"extractor": "delf", "image_size": 320},
})


@dataclass
class Verification:
    """How a pair of images is verified: local features (`verifier` + `extractor_kw` overrides of
    VERIFIERS), matching (ratio test, mutual) and the robust fit whose inliers are the pair's count."""
    verifier: str = "sift"
    ratio: float = 0.9               # Lowe's ratio test (mutual nearest neighbours as well)
    transform: str = "homography"    # kit.localfeatures.matching.TRANSFORMS
    ransac_threshold: float = 8.0    # pixels in the verifier's working frame
    robust: str = "magsac"           # kit.localfeatures.matching.ROBUST
    threads: int = 2
    extractor_kw: dict = field(default_factory=dict)  # overrides of VERIFIERS[verifier]

    def extractor_settings(self) -> dict:
        VERIFIERS.check(self.verifier, "verification: ")
        return {**VERIFIERS[self.verifier], **self.extractor_kw}

    def build_extractor(self):
        settings = self.extractor_settings()
        return EXTRACTORS[EXTRACTORS.check(settings.pop("extractor"), "local features: ")](**settings)

    def match_kw(self) -> dict:
        return {"ratio": self.ratio, "transform": self.transform, "threshold": self.ransac_threshold,
                "robust": self.robust}


def parallel_features(extractor, ids: list, paths: list, cache_dir, threads: int, progress: bool,
                      strict: bool = False) -> dict:
    """kit.localfeatures.base.cached_features over `threads` interleaved shares of the ids, in threads
    (OpenCV's SIFT releases the GIL; the extractor keeps no per-call state)."""
    from joblib import Parallel, delayed

    n = max(1, min(threads, len(ids)))
    parts = Parallel(n_jobs=n, prefer="threads")(
        delayed(base.cached_features)(extractor, ids[k::n], paths[k::n], cache_dir, progress=progress and k == 0,
                                 strict=strict)
        for k in range(n))
    return {i: f for part in parts for i, f in part.items()}


def pair_cache_file(cache_dir, extractor, v: Verification):
    """Where verified pairs' inlier counts are kept: one .npz per extractor + matching setting (a changed
    setting never reads stale counts), beside the feature cache; None without a cache."""
    root = resolve_cache_dir(cache_dir)
    if root is None:
        return None
    match = json.dumps([v.ratio, v.transform, v.ransac_threshold, v.robust]).encode()
    return root / cache_key(extractor) / f"pairs-{hashlib.sha1(match).hexdigest()[:12]}.npz"


def load_pairs(path) -> dict:
    if path is None or not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return dict(zip(z["pairs"].tolist(), z["inliers"].tolist()))


def save_pairs(path, pairs: dict) -> None:
    if path is None or not pairs:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, pairs=np.array(list(pairs), dtype=str), inliers=np.array(list(pairs.values()), np.int32))


class PairVerifier:
    """Inlier counts of (query id, index id) pairs under one `Verification`: features extracted once per
    image (disk cache), counts kept per pair (disk cache beside it, so another run's pairs are not matched
    again); `clock` adds up the seconds and pairs."""

    def __init__(self, v: Verification, data_dir, cache_dir=None, progress: bool = True, strict: bool = False):
        self.v, self.data_dir, self.progress, self.strict = v, data_dir, progress, strict
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.extractor = v.build_extractor()
        self.file = pair_cache_file(self.cache_dir, self.extractor, v)
        self.known = load_pairs(self.file)
        self.clock = {"features": 0.0, "matching": 0.0, "pairs": 0, "pairs_matched": 0}

    def inliers(self, pairs: list) -> np.ndarray:
        """[len(pairs)] inlier counts of (id, id) pairs."""
        t0 = time.perf_counter()
        keys = [f"{a}|{b}" for a, b in pairs]
        new = [tuple(k.split("|")) for k in dict.fromkeys(keys) if k not in self.known]
        need = list(dict.fromkeys(i for pair in new for i in pair))
        feats = parallel_features(self.extractor, need, [find_image(self.data_dir, i) for i in need],
                                  self.cache_dir, self.v.threads, self.progress and len(need) > 64, self.strict)
        t1 = time.perf_counter()
        if new:
            counts = verify_pairs(new, feats, self.v.threads, **self.v.match_kw())
            self.known.update(zip(("|".join(p) for p in new), counts.tolist()))
            save_pairs(self.file, self.known)
        self.clock["features"] += t1 - t0
        self.clock["matching"] += time.perf_counter() - t1
        self.clock["pairs"] += len(keys)
        self.clock["pairs_matched"] += len(new)
        return np.array([self.known[k] for k in keys], np.int32)
