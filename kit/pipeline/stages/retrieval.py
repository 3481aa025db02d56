"""Retrieval stages: kNN / centroid votes over the labelled images (`kit retrieve`) and spatial re-ranking
with local features (`kit rerank`). The index of a validation query is the training folds; the index of
any other query (test, distractors) is every labelled image (training folds + validation fold)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.atomic import atomic_path, write_json
from kit.errors import KitError
from kit.inference.calibration import (Calibration, calibrated_ranking, candidate_features, cross_fitted_ranking,
                                       fit_calibration)
from kit.inference.rerank import (RerankConfig, first_class_inliers, fuse, reference_of, reference_wanted, reranked,
                                  verify_candidates)
from kit.inference.retrieval import RETRIEVERS, fit_retriever, load_index
from kit.pipeline.stage import choice, ref, stage
from kit.predictions import load_predictions, save_predictions
from kit.truth import load_truth, truth_by_id


def index_files(files: dict, split: str) -> list:
    """The index of queries of `split`: train (+ val unless the queries are the validation fold)."""
    if "train" not in files:
        raise KitError(f"the embeddings stage wrote no train split (it has: {', '.join(files)})")
    return [files["train"]] + ([files["val"]] if split != "val" and "val" in files else [])


@dataclass
class RetrieveSettings:
    embeddings: str = ref("predict", stages=("predict", "ensemble"))
    method: str = choice("knn", lambda: RETRIEVERS)
    k: int = 10                     # knn: neighbours that vote
    power: float = 1.0              # knn: vote = similarity ** power
    agg: str = "max"                # knn: a class's vote = max (best neighbour) or sum over its neighbours
    qe: int = 0                     # knn: alpha query expansion with K neighbours (0 = off)
    qe_alpha: float = 3.0
    dba: int = 0                    # knn: database-side augmentation with K neighbours (0 = off)
    dba_alpha: float = 3.0
    topk: int = 5
    distance_threshold: float = 0.5  # centroids: cosine distance cut of the clustering
    min_cluster_size: int = 50      # centroids
    threshold: float = -1.0         # centroids: similarity below it = no landmark (-1 = off)
    backend: str = "auto"
    folds: str = ref("folds", stages=("folds",))


def fit_index(s: RetrieveSettings, index: list, labels, jobs: int = 1):
    """The retriever of `s` fitted on the index prediction files (`kit retrieve`, the retrieve stage)."""
    if s.method == "knn":
        kw = dict(k=s.k, power=s.power, agg=s.agg, qe=s.qe, qe_alpha=s.qe_alpha, dba=s.dba, dba_alpha=s.dba_alpha)
    else:
        kw = dict(distance_threshold=s.distance_threshold, min_cluster_size=s.min_cluster_size,
                  threshold=None if s.threshold < 0 else s.threshold, n_jobs=jobs)
    return fit_retriever(s.method, load_index(list(index)), labels, backend=s.backend, **kw)


def query_embeddings(path):
    query = load_predictions(path)
    if query.embeddings is None:
        raise KitError(f"{path}: no embeddings in this prediction file")
    return query


@stage("retrieve", RetrieveSettings)
def retrieve(s: RetrieveSettings, ctx) -> dict:
    """kNN or centroid predictions of every query split from its index -> SPLIT.npz."""
    files, labels = ctx.split_files(s.embeddings), ctx.of(s.folds)["folds"]
    out, models = {}, {}
    for split in ctx.query_splits(files):
        key = tuple(map(str, index_files(files, split)))
        if key not in models:
            models[key] = fit_index(s, key, labels, ctx.run.workers)
        query = query_embeddings(files[split])
        out[split] = save_predictions(models[key].predict(query.ids, query.embeddings, topk=s.topk),
                                      ctx.dir / f"{split}.npz")
    return {"splits": out}


@dataclass
class RerankSettings(RerankConfig):
    embeddings: str = ref("predict", stages=("predict",))
    folds: str = ref("folds", stages=("folds",))
    image_size: int = 0             # local-feature working size (0 = the verifier's: sift 512, delf 320)
    max_keypoints: int = 0          # sift: keypoints per image (0 = 1000)
    delf: str = ""                  # delf: attention head from `kit train-delf` ("" = feature-norm scores)
    agg: str = "max"                # the kNN search, as in the retrieve stage
    qe: int = 0
    qe_alpha: float = 3.0
    dba: int = 0
    dba_alpha: float = 3.0
    topk: int = 5
    calibration: str = ""           # calibrated fusion outside a recipe: a rerank stage's calibration.json
                                    # ("" = none: the evidence fusion; the stage fits its own on validation)


def rerank_config(s: RerankSettings) -> RerankConfig:
    cfg = RerankConfig(**{f.name: getattr(s, f.name) for f in dataclasses.fields(RerankConfig)})
    extra = {"image_size": s.image_size or None, "max_keypoints": s.max_keypoints or None, "delf": s.delf or None}
    cfg.extractor_kw = {**cfg.extractor_kw, **{k: v for k, v in extra.items() if v is not None}}
    return cfg


def verify_query(s: RerankSettings, index: list, labels, query_file, data, cache_dir, references=(),
                 calibrated: bool = False):
    """(query, its verified candidates against the index files, its similarity to `references` (default: the
    queries; None unless a calibrated model or the reference term uses it))."""
    cfg = rerank_config(s)
    idx = load_index(list(index))
    knn = fit_retriever("knn", idx, labels, k=cfg.candidates, agg=s.agg, qe=s.qe, qe_alpha=s.qe_alpha, dba=s.dba,
                        dba_alpha=s.dba_alpha)
    query = query_embeddings(query_file)
    refs = load_index(list(references)) if references else None
    for name, p in (("index", idx), ("references", refs)):
        if p is not None and p.embeddings.shape[1] != query.embeddings.shape[1]:
            raise KitError(f"{query_file}: {query.embeddings.shape[1]}-d embeddings, the {name} has "
                           f"{p.embeddings.shape[1]}")
    v = verify_candidates(query, knn, idx.ids, cfg, data, cache_dir, topk=s.topk)
    return query, v, reference_of(query, refs, cfg.reference_k) if reference_wanted(cfg, calibrated) else None


def write_reranked(cfg, query, v, reference, fused, out):
    """OUT.npz, OUT.inliers.npz (verified pairs, for non-landmark scoring), OUT.seconds.json -> the Reranked."""
    r = reranked(query, v, fused, reference)
    pred, out = r.predictions, Path(out)
    save_predictions(pred, out)
    stem = str(out).removesuffix(".npz")
    with atomic_path(stem + ".inliers.npz") as tmp, open(tmp, "wb") as f:
        extra = {} if reference is None else {"reference": reference}
        np.savez(f, ids=pred.ids, neighbours=r.neighbours, inliers=r.inliers, top_inliers=r.top_inliers, **extra)
    write_json({**r.seconds, "images": len(query), "config": dataclasses.asdict(cfg)}, stem + ".seconds.json")
    return r


def rerank_files(s: RerankSettings, index: list, labels, query_file, data, cache_dir, references=(), out=None):
    """`kit rerank`: one query file against the index files -> OUT.npz, OUT.inliers.npz, OUT.seconds.json."""
    cfg = rerank_config(s)
    query, v, reference = verify_query(s, index, labels, query_file, data, cache_dir, references,
                                       calibrated=bool(s.calibration))
    stored = json.loads(Path(s.calibration).read_text())["model"] if s.calibration else None  # null: fell back
    model = Calibration.from_dict(stored) if stored and cfg.fusion == "calibrated" else None
    return write_reranked(cfg, query, v, reference, fuse(v, cfg, s.topk, reference, model), out)


def calibrate(found: dict, cfg, topk: int, ctx, solution):
    """The calibrated fusion's model (shipped, or fitted on val + distractors), {split: cross-fitted labels, scores}."""
    shipped = ctx.shipped_file("calibration.json")
    if shipped is not None:
        d = json.loads(shipped.read_text())["model"]
        return (Calibration.from_dict(d) if d else None), {}
    val = [x for x in ("val", "distractors") if x in found]
    if not val:
        return None, {}
    parts = {x: candidate_features(found[x][1].base_labels, found[x][1].sims, found[x][1].inliers,
                                   found[x][1].nbr_labels, cfg.min_inliers, found[x][2]) for x in val}
    ids = np.concatenate([found[x][1].ids for x in val])
    classes, feats = (np.concatenate([parts[x][i] for x in val]) for i in (0, 1))
    by_id = truth_by_id(load_truth(solution))   # each id's landmark: -1 non-landmark, -2 not in val_solution.csv
    truth = np.array([by_id[i][0] if by_id.get(i) else (-1 if i in by_id else -2) for i in map(str, ids)], np.int64)
    keep = truth >= -1
    model = fit_calibration(feats[keep], classes[keep], truth[keep], cfg.min_inliers)
    cross = None if model is None else cross_fitted_ranking(feats[keep], classes[keep], truth[keep], ids[keep],
                                                            cfg.min_inliers, topk)
    if cross is None:
        model = None
    write_json({"model": None if model is None else model.to_dict(),
                "note": "fitted on the validation set; none: too small, the evidence fusion is used"},
               ctx.dir / "calibration.json")
    if model is None:
        return None, {}
    labels, scores = calibrated_ranking(model, classes, feats, topk)
    labels[keep], scores[keep] = cross
    bounds = np.cumsum([len(found[x][1].ids) for x in val])[:-1]
    return model, dict(zip(val, zip(np.split(labels, bounds), np.split(scores, bounds))))


@stage("rerank", RerankSettings, check=lambda s: rerank_config(s).check())
def rerank(s: RerankSettings, ctx) -> dict:
    """Spatial re-ranking: nearest index images verified with local features + RANSAC -> SPLIT.npz.
    Also SPLIT.inliers.npz and, for the calibrated fusion, calibration.json (fitted on validation, cross-fitted)."""
    files, labels = ctx.split_files(s.embeddings), ctx.of(s.folds)["folds"]
    splits = ctx.query_splits(files)
    cfg = rerank_config(s)
    # the reference set of a query: its own collection (test: itself; validation: the validation fold +
    # the fitting distractors, the validation set as a whole)
    own = [files[x] for x in splits if x != "test"]
    found = {x: verify_query(s, index_files(files, x), labels, files[x], ctx.data, ctx.cache_dir,
                             own if x != "test" else (), calibrated=True) for x in splits}
    model, fitted = (calibrate(found, cfg, s.topk, ctx, ctx.of(s.folds).get("val_solution"))
                     if cfg.fusion == "calibrated" else (None, {}))
    out = {}
    for x in splits:
        query, v, reference = found[x]
        fused = fuse(v, cfg, s.topk, reference, model)
        if x in fitted:
            fused = (*fitted[x], first_class_inliers(v, fitted[x][0]), "calibrated, cross-fitted")
        out[x] = ctx.dir / f"{x}.npz"
        write_reranked(cfg, query, v, reference, fused, out[x])
        ctx.log(f"  {x}: {len(query)} images, {v.seconds['pairs']} pairs verified, fusion {fused[3]}")
    return {"splits": out}
