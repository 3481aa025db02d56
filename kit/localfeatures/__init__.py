"""kit.localfeatures: local features for geometric verification: base (features and their cache), sift, delf,
matching (descriptors + RANSAC), verification (the pair loop of `kit rerank` and the filters); EXTRACTORS."""
from __future__ import annotations

from kit.localfeatures.sift import SiftExtractor
from kit.registry import Registry


def _delf(**kw):
    from kit.localfeatures.delf.extractor import DelfExtractor

    return DelfExtractor(**kw)


EXTRACTORS = Registry("extractor", {"delf": _delf, "sift": SiftExtractor})
