"""Spatial re-ranking: verify each query against its nearest training images with local features + a robust
geometric fit, then fuse kNN and inliers into ranked classes and a confidence. The settings and the steps in order;
each step has its module (kit.inference.candidates, kit.localfeatures.verification, kit.inference.fusion)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kit.errors import KitError
from kit.inference.calibration import calibrated_ranking, candidate_features
from kit.inference.candidates import class_candidates
from kit.inference.fusion import FUSIONS, class_max, class_scores, evidence_fusion, unverified_penalty
from kit.inference.retrieval import knn_vote
from kit.inference.search import l2n, reference_similarity
from kit.localfeatures.verification import VERIFIERS, PairVerifier, Verification
from kit.predictions import Predictions

__all__ = ["FUSIONS", "VERIFIERS", "RerankConfig", "Verified", "Reranked", "verify_candidates", "fuse",
           "spatial_rerank"]


@dataclass
class RerankConfig(Verification):
    candidates: int = 10             # nearest index images verified per query
    classes: int = 3                 # ... plus the `per_class` most similar images of each of the top
    per_class: int = 5               # `classes` classes (0 = off): other views of a likely class get a chance
    weight: float = 1.0              # inlier term: weight * min(inliers, cap) / cap
    cap: float = 30.0
    min_inliers: int = 10            # fewer inliers: not verified (chance matches of unrelated images)
    margin: float = 1.0              # evidence = inliers - margin * best other class's inliers (0 = raw counts)
    fusion: str = "calibrated"       # kit.inference.fusion.FUSIONS; "calibrated" without a fitted model
                                     # (too small a validation set, a single query file): "evidence"
    switch_margin: float = 10.0      # evidence: the inlier margin a verified class needs to replace the kNN class
    reference_k: int = 10            # references averaged (`reference_similarity`): a calibrated feature, and
    reference_weight: float = 0.0    # for the other fusions: unverified rows lose weight x it (0 = off)

    def check(self) -> None:
        FUSIONS.check(self.fusion, "rerank: ")
        self.extractor_settings()
        for name, value, ok, rule in (("candidates", self.candidates, self.candidates >= 1, ">= 1"),
                                      ("margin", self.margin, self.margin >= 0, ">= 0"),
                                      ("switch_margin", self.switch_margin, self.switch_margin > 0, "> 0"),
                                      ("cap", self.cap, self.cap > 0, "> 0")):
            if not ok:
                raise KitError(f"rerank: {name}={value} (must be {rule})")


@dataclass
class Verified:
    """A query set's verified candidates [Q, N] (the first `n_knn` columns are the kNN neighbours; label -1 =
    none) and the kNN result [Q, topk] they extend."""
    ids: np.ndarray
    sims: np.ndarray
    nbr_labels: np.ndarray
    nbr_ids: np.ndarray
    inliers: np.ndarray
    n_knn: int
    base_labels: np.ndarray
    base_scores: np.ndarray
    seconds: dict


@dataclass
class Reranked:
    predictions: Predictions
    inliers: np.ndarray          # [Q, N] inliers of each verified neighbour
    neighbours: np.ndarray       # [Q, N] index ids
    top_inliers: np.ndarray      # [Q] max inliers among the neighbours of the predicted class
    seconds: dict
    reference: np.ndarray | None = None   # [Q] reference_similarity (None: not computed)


def _verify(pv, query_ids, index_ids, labels, rows):
    """Labels, ids and inliers of candidate `rows` [Q, N]."""
    nbr_labels = np.where(rows >= 0, labels[np.maximum(rows, 0)], -1)
    nbr_ids = np.where(rows >= 0, index_ids[np.maximum(rows, 0)], "")
    nbr_labels[nbr_ids == query_ids[:, None]] = -1     # an index image never verifies itself
    todo = np.argwhere(nbr_labels >= 0)
    inliers = np.zeros(rows.shape, np.int32)
    if len(todo):
        inliers[todo[:, 0], todo[:, 1]] = pv.inliers([(query_ids[q], nbr_ids[q, n]) for q, n in todo])
    return nbr_labels, nbr_ids, inliers


def verify_candidates(query: Predictions, knn, index_ids, cfg: RerankConfig, data_dir, cache_dir=None,
                      topk: int = 5, progress: bool = True) -> Verified:
    """The kNN result of `query` (its embeddings) from `knn` (a fitted KnnPredictor over `index_ids`) and
    the inliers of its candidates (`class_candidates`)."""
    if query.embeddings is None:
        raise KitError("rerank: the query prediction file has no embeddings")
    cfg.check()   # before any feature is extracted
    index_ids, qids = np.asarray(index_ids).astype(str), np.asarray(query.ids).astype(str)
    t0 = time.perf_counter()
    qemb = l2n(query.embeddings)
    sims, rows = knn.search(query.embeddings, cfg.candidates)
    n_knn = rows.shape[1]   # the kNN neighbours; class candidates are appended after them
    sims, rows = class_candidates(qemb, sims, rows, knn.xb, knn.labels, cfg.classes, cfg.per_class)
    pv = PairVerifier(cfg, data_dir, cache_dir, progress)
    nbr_labels, nbr_ids, inliers = _verify(pv, qids, index_ids, knn.labels, rows)
    base_labels, base_scores = knn_vote(sims[:, :n_knn], nbr_labels[:, :n_knn], topk,
                                        power=getattr(knn, "power", 1.0), agg=getattr(knn, "agg", "max"))
    c = pv.clock
    seconds = {"search_and_features": time.perf_counter() - t0 - c["matching"], "matching": c["matching"],
               "pairs": int(c["pairs"]), "pairs_matched": int(c["pairs_matched"])}
    return Verified(qids, sims, nbr_labels, nbr_ids, inliers, n_knn, base_labels, base_scores, seconds)


def fuse(v: Verified, cfg: RerankConfig, topk: int, reference=None, calibration=None):
    """Classes and scores of `v` by `cfg.fusion` (calibrated without a fitted `calibration`: evidence)
    -> (labels, scores, inliers of each row's first class [Q], the fusion used)."""
    fusion = "evidence" if cfg.fusion == "calibrated" and calibration is None else cfg.fusion
    if fusion == "calibrated":
        classes, feats = candidate_features(v.base_labels, v.sims, v.inliers, v.nbr_labels, cfg.min_inliers,
                                            reference)
        labels, scores = calibrated_ranking(calibration, classes, feats, topk)
        return labels, scores, first_class_inliers(v, labels), fusion
    if fusion == "evidence":
        labels, scores, top, _ = evidence_fusion(v.base_labels, v.base_scores, v.sims, v.inliers, v.nbr_labels,
                                                 cfg.weight, cfg.cap, cfg.min_inliers, cfg.margin, cfg.switch_margin)
    else:
        labels, scores, raw = class_scores(v.sims, v.inliers, v.nbr_labels, cfg.weight, cfg.cap, topk,
                                           cfg.min_inliers, cfg.margin)
        top = raw[:, 0] if raw.shape[1] else np.zeros(len(labels), np.int32)
    if cfg.reference_weight > 0 and reference is not None:
        scores = unverified_penalty(scores, labels, top, reference, cfg.min_inliers, cfg.reference_weight)
    return labels, scores, top, fusion


def first_class_inliers(v: Verified, labels: np.ndarray) -> np.ndarray:
    """[Q] the most inliers among each query's verified candidates of its first class in `labels`."""
    return class_max(v.inliers, v.nbr_labels, labels[:, :1], 0)[:, 0]


def reference_wanted(cfg: RerankConfig, calibrated: bool) -> bool:
    """Whether the reference similarity is needed: a calibrated model uses it as a feature, the other
    fusions only with the reference term on."""
    return (calibrated and cfg.fusion == "calibrated" or cfg.reference_weight > 0) and cfg.reference_k > 0


def reranked(query: Predictions, v: Verified, fused: tuple, reference=None) -> Reranked:
    """The Reranked of `query` from its verification `v` and `fuse`'s (labels, scores, top inliers, fusion)."""
    labels, scores, top, fusion = fused
    pred = Predictions(query.ids, labels, scores, query.embeddings)
    seconds = {**v.seconds, "fusion": fusion,
               "switched": int(np.sum((labels[:, 0] != v.base_labels[:, 0]) & (labels[:, 0] >= 0)))}
    return Reranked(pred, v.inliers, v.nbr_ids, np.asarray(top, np.int32), seconds, reference)


def reference_of(query: Predictions, references: Predictions | None, k: int) -> np.ndarray:
    """`reference_similarity` of the queries to `references` (default: the queries themselves)."""
    refs = query if references is None else references
    if refs.embeddings is None:
        raise KitError("rerank: the reference prediction file has no embeddings")
    return reference_similarity(query.embeddings, query.ids, refs.embeddings, refs.ids, k)


def spatial_rerank(query: Predictions, knn, index_ids: np.ndarray, cfg: RerankConfig, data_dir,
                   cache_dir=None, topk: int = 5, progress: bool = True,
                   references: Predictions | None = None, calibration=None) -> Reranked:
    """Re-rank `query` with `knn` (a fitted KnnPredictor over `index_ids`): `verify_candidates`, then `fuse`
    (with the reference similarity to `references`, default the queries, when the fusion uses it)."""
    v = verify_candidates(query, knn, index_ids, cfg, data_dir, cache_dir, topk, progress)
    reference = reference_of(query, references, cfg.reference_k) if reference_wanted(cfg, calibration is not None) \
        else None
    return reranked(query, v, fuse(v, cfg, topk, reference, calibration), reference)
