"""kit.filters: non-landmark filters that rescore a prediction file so images without a landmark rank
last. base (rescoring maths, fitting, the training index), local (delf/sift + RANSAC), distractor, centroids,
chain (names joined by +, JSON save/load). FILTERS is the registry every builder and CLI choice uses."""
from kit.filters.centroid import CentroidFilter
from kit.filters.distractor import DistractorFilter
from kit.filters.local import DelfFilter, SiftFilter
from kit.registry import Registry

FILTERS = Registry("filter", {"delf": DelfFilter, "sift": SiftFilter, "distractor": DistractorFilter,
                             "centroids": CentroidFilter}, aliases={"centroid": "centroids"})
