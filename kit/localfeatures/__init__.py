"""kit.localfeatures: local features for geometric verification. base (the LocalFeatures record and its
on-disk cache), sift (OpenCV RootSIFT), delf (attention-selected CNN features + training), matching
(descriptor matching + RANSAC), verification (the one verification setting and cached pair loop of
`kit rerank` and the local-feature filters). EXTRACTORS is the registry of extractors by name."""
from __future__ import annotations

from kit.errors import KitError
from kit.localfeatures.sift import SiftExtractor
from kit.registry import Registry


def _delf(**kw):
    from kit.localfeatures.delf.extractor import DelfExtractor

    return DelfExtractor(**kw)


EXTRACTORS = Registry("extractor", {"delf": _delf, "sift": SiftExtractor})


def build_extractor(name: str, **kw):
    EXTRACTORS.check(name, "local features: ")
    return EXTRACTORS[name](**kw)
