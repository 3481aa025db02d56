"""kit.localfeatures: local features for geometric verification. base (the LocalFeatures record and its
on-disk cache), sift (OpenCV RootSIFT), delf (attention-selected CNN features + training), matching
(descriptor matching + RANSAC). EXTRACTORS is the registry of extractors by name."""
from __future__ import annotations

from kit.errors import KitError
from kit.localfeatures.sift import SiftExtractor


def _delf(**kw):
    from kit.localfeatures.delf.extractor import DelfExtractor

    return DelfExtractor(**kw)


EXTRACTORS = {"delf": _delf, "sift": SiftExtractor}


def build_extractor(name: str, **kw):
    if name not in EXTRACTORS:
        raise KitError(f"local features: unknown extractor '{name}' (valid: {', '.join(EXTRACTORS)})")
    return EXTRACTORS[name](**kw)
