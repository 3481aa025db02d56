"""Spatial re-ranking: verify each query against its N nearest training images with local features +
RANSAC, then rank classes (and form the confidence) from similarity AND inlier counts.

GLR 2019-2020 winners' recipe (e.g. 2020 1st place, "sim + w * min(inliers, cap) / cap"): neighbour j of
query q scores v_j = sim_j + weight * min(e_j, cap) / cap; a class scores the max v_j over its neighbours
among the N verified ones. e_j = inliers_j - margin * (the most inliers of q's candidates of OTHER classes):
the evidence beyond what q's chance matches give (a textured photo gets 7-9 inliers with everything; a
landmark gets many with its own class only), Lowe's ratio test at the level of classes. A class whose
best raw inliers reach min_inliers is verified; an unverified class scores its best cosine similarity
(< 1), so weak inliers only choose between classes. A landmark photo shares a rigid 3-D scene with its
class's training images, so it rises above every unverified image whatever the global similarity of other
buildings of the same city: this is what separates the non-landmark photos that look like landmarks,
which no similarity threshold does.

Unverified rows are then scored against references from the same collection (`unverified_penalty`):
minus their mean cosine to the 10 most similar other queries, so a photo like many others (a street,
another building) ranks below a distinctive one.

Verifiers (VERIFIERS, by name) are local-feature settings of kit.localfeatures: "sift" (RootSIFT at the
photo's native size, weight-free) and "delf" (DELF on the packaged backbone or a trained attention head).
Features are cached on disk per image id; matching runs in `threads` threads (OpenCV releases the GIL).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kit.errors import KitError
from kit.predictions import Predictions
from kit.registry import Registry

FUSIONS = Registry("fusion", dict.fromkeys(("evidence", "sum")))
VERIFIERS = Registry("verifier", {
    "sift": {"extractor": "sift", "image_size": 512, "max_keypoints": 1000},
    "delf": {"extractor": "delf", "image_size": 320},
})


@dataclass
class RerankConfig:
    verifier: str = "sift"
    candidates: int = 10             # nearest index images verified per query
    classes: int = 3                 # ... plus the `per_class` most similar images of each of the top
    per_class: int = 5               # `classes` classes (0 = off): other views of a likely class get a chance
    weight: float = 1.0              # inlier term: weight * min(inliers, cap) / cap
    cap: float = 30.0
    min_inliers: int = 10            # fewer inliers: not verified (chance matches of unrelated images)
    margin: float = 1.0              # evidence = inliers - margin * best other class's inliers (0 = raw counts)
    ratio: float = 0.9               # Lowe's ratio test (mutual nearest neighbours as well)
    transform: str = "homography"    # kit.localfeatures.matching.TRANSFORMS
    ransac_threshold: float = 8.0    # pixels in the verifier's working frame
    robust: str = "magsac"           # kit.localfeatures.matching.ROBUST
    threads: int = 2
    extractor_kw: dict = field(default_factory=dict)  # overrides of VERIFIERS[verifier]
    fusion: str = "evidence"         # "evidence": verification only adds to the kNN result (`evidence_fusion`);
                                     # "sum": classes re-ranked by max(sim + inlier term) (`class_scores`)
    switch_margin: float = 10.0      # evidence: the inlier margin a verified class needs to replace the kNN class
    near_cut: int = 0                # queries whose best pair has near_cut..min_inliers-1 inliers (0 = off) also
    near_candidates: int = 30        # verify their near_candidates neighbours and the near_per_class most similar
    near_per_class: int = 10         # images of each of their top `classes` classes
    reference_k: int = 10            # unverified rows: score - reference_weight * mean cosine of the
    reference_weight: float = 0.0    # reference_k most similar reference images (0 = off; `unverified_penalty`)

    def check(self) -> None:
        FUSIONS.check(self.fusion, "rerank: ")
        if self.candidates < 1:
            raise KitError(f"rerank: candidates={self.candidates} (must be >= 1)")
        if self.margin < 0:
            raise KitError(f"rerank: margin={self.margin} (must be >= 0)")
        if self.switch_margin <= 0:
            raise KitError(f"rerank: switch_margin={self.switch_margin} (must be > 0)")
        if self.cap <= 0:
            raise KitError(f"rerank: cap={self.cap} (must be > 0)")

    def extractor_settings(self) -> dict:
        VERIFIERS.check(self.verifier, "rerank: ")
        return {**VERIFIERS[self.verifier], **self.extractor_kw}


def class_candidates(query_emb: np.ndarray, sims: np.ndarray, rows: np.ndarray, index_emb: np.ndarray,
                     labels: np.ndarray, classes: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The neighbours (sims, rows [Q, N], row -1 = none) plus, for each of each query's `classes` best
    classes among them (by max similarity), its `per_class` most similar index images (those not already there).

    A landmark seen from another side or at night often matches a training image that is not among its
    global nearest neighbours but is of the right class: verifying more images of the few likely classes
    (not more neighbours overall) is where extra pairs find inliers. -> padded [Q, N + classes*per_class]."""
    from kit.inference.retrieval import knn_vote
    from kit.localfeatures.matching import ClassRows

    if classes <= 0 or per_class <= 0 or not len(rows):
        return sims, rows
    nbr_labels = np.where(rows >= 0, labels[np.maximum(rows, 0)], -1)
    top, _ = knn_vote(sims, nbr_labels, classes, power=1.0, agg="max")
    by_class = ClassRows(labels)
    width = rows.shape[1] + classes * per_class
    out_s = np.full((len(rows), width), -1.0, np.float32)
    out_r = np.full((len(rows), width), -1, np.int64)
    out_s[:, :rows.shape[1]], out_r[:, :rows.shape[1]] = sims, rows
    for q in range(len(rows)):
        have, n = set(rows[q][rows[q] >= 0].tolist()), rows.shape[1]
        for label in top[q][top[q] >= 0].tolist():
            for m in by_class.nearest(label, query_emb[q], index_emb, per_class).tolist():
                if m not in have:
                    have.add(m)
                    out_s[q, n], out_r[q, n] = index_emb[m] @ query_emb[q], m
                    n += 1
    return out_s, out_r


def competing_inliers(inliers: np.ndarray, nbr_labels: np.ndarray) -> np.ndarray:
    """[Q, N] per candidate: the most inliers among the same query's candidates of another class (0 if none):
    how many inliers this query gets by chance (-1 labels are no candidate). From each query's two classes
    with the most inliers (`knn_vote`, agg max): a candidate of the first gets the second's, any other the first's."""
    from kit.inference.retrieval import knn_vote

    nbr_labels = np.asarray(nbr_labels)
    inliers = np.where(nbr_labels >= 0, np.asarray(inliers), 0)
    top, most = knn_vote(inliers, nbr_labels, 2, power=1.0, agg="max")
    out = np.where(nbr_labels == top[:, :1], most[:, 1:2], most[:, :1])
    return np.where(nbr_labels >= 0, out, 0).astype(inliers.dtype)


def class_scores(sims: np.ndarray, inliers: np.ndarray, nbr_labels: np.ndarray, weight: float, cap: float,
                 topk: int, min_inliers: int = 0, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query, classes ranked by max over their neighbours of sim + weight * min(e, cap) / cap with
    e = max(inliers - margin * `competing_inliers`, 0); a listed class whose best raw inliers are below
    `min_inliers` (unverified) scores its best similarity instead.

    sims, inliers, nbr_labels: [Q, N] (label -1 = no neighbour).
    -> (labels [Q, topk], scores [Q, topk], raw inliers [Q, topk]: each listed class's most)."""
    from kit.inference.retrieval import knn_vote

    if cap <= 0:
        raise KitError(f"rerank: cap={cap} (must be > 0)")
    if margin < 0:
        raise KitError(f"rerank: margin={margin} (must be >= 0)")
    sims = np.asarray(sims, np.float64)
    nbr_labels = np.asarray(nbr_labels)
    inliers = np.where(nbr_labels >= 0, np.asarray(inliers), 0)
    e = inliers - margin * competing_inliers(inliers, nbr_labels) if margin else inliers
    labels, scores = knn_vote(sims + weight * np.minimum(np.maximum(e, 0), cap) / cap, nbr_labels, topk,
                              power=1.0, agg="max")
    hit = (nbr_labels[:, None, :] == labels[:, :, None]) & (labels[:, :, None] >= 0)   # [Q, topk, N]
    raw = np.where(hit, inliers[:, None, :], 0).max(axis=2, initial=0)
    best_sim = np.where(hit, sims[:, None, :], -np.inf).max(axis=2, initial=-np.inf)
    scores = np.where((raw < min_inliers) & (labels >= 0), best_sim, scores).astype(np.float32)
    return labels, scores, raw.astype(np.int32)


def evidence_fusion(base_labels: np.ndarray, base_scores: np.ndarray, sims: np.ndarray, inliers: np.ndarray,
                    nbr_labels: np.ndarray, weight: float, cap: float, min_inliers: int, margin: float,
                    switch_margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Verification as added evidence on top of a kNN result (base_labels/base_scores [Q, topk], best first).

    Per query, a class's evidence is E = its most inliers - margin x the most inliers of any other candidate
    class (the inlier margin; margin 0: raw counts). A class is verified when its most inliers reach
    `min_inliers`. Then:
    - the kNN class is verified: it stays, and the row's score rises to kNN score + weight * min(E+, cap) / cap;
    - another class is verified with E >= `switch_margin` (its lead over every other class, the kNN class
      included, clears this cut): it becomes the first class, scored kNN score + the same lift; the kNN
      classes follow with their kNN scores;
    - otherwise (nothing verified, or weaker evidence for another class) the row is the kNN row, unchanged:
      same classes, same scores, so unverified rows keep their kNN order among themselves.
    A row's score never falls below its kNN score, and only evidence reorders classes.
    sims, inliers, nbr_labels: [Q, N] verified candidates (label -1 = none).
    -> (labels, scores [Q, topk], raw inliers of each row's first class [Q], switched [Q] bool)."""
    from kit.inference.retrieval import knn_vote

    if cap <= 0:
        raise KitError(f"rerank: cap={cap} (must be > 0)")
    labels = np.array(base_labels, np.int64, copy=True)
    scores = np.array(base_scores, np.float64, copy=True)
    nbr_labels = np.asarray(nbr_labels)
    q = len(labels)
    switched = np.zeros(q, bool)
    top_raw = np.zeros(q, np.int32)
    if q == 0 or labels.shape[1] == 0:
        return labels, scores.astype(np.float32), top_raw, switched
    inl = np.where(nbr_labels >= 0, np.asarray(inliers), 0)
    # every candidate class's most inliers, [Q, C] over the classes present in the candidates
    width = max(1, nbr_labels.shape[1])
    cls, most = knn_vote(inl.astype(np.float64), nbr_labels, width, power=1.0, agg="max")
    most = np.where(cls >= 0, most, 0.0)
    first = labels[:, 0]
    base_raw = np.where(cls == first[:, None], most, 0.0).max(axis=1)
    best_other = np.where((cls != first[:, None]) & (cls >= 0), most, 0.0).max(axis=1)
    v, v_raw = cls[:, 0], most[:, 0]        # the class with the most inliers and its count
    second = most[:, 1] if most.shape[1] > 1 else np.zeros(q)
    lift = lambda e: weight * np.minimum(np.maximum(e, 0.0), cap) / cap   # noqa: E731
    agree = (first >= 0) & (base_raw >= min_inliers)
    e_base = base_raw - margin * best_other
    switch = ((v >= 0) & (v != first) & (v_raw >= min_inliers) & (v_raw - margin * second >= switch_margin)
              & (v_raw > base_raw))
    knn_top = scores[:, 0].copy()
    scores[:, 0] = np.where(agree & ~switch, knn_top + lift(e_base), knn_top)
    top_raw[:] = np.where(switch, v_raw, base_raw).astype(np.int32)
    for i in np.flatnonzero(switch):
        rest = [(c, s) for c, s in zip(labels[i], scores[i]) if c != v[i] and c >= 0]
        new = [(int(v[i]), knn_top[i] + lift(v_raw[i] - margin * second[i]))] + rest
        new = (new + [(-1, 0.0)] * labels.shape[1])[:labels.shape[1]]
        labels[i] = [c for c, _ in new]
        scores[i] = [s for _, s in new]
    switched[:] = switch
    return labels, scores.astype(np.float32), top_raw, switched


def unverified_penalty(scores: np.ndarray, labels: np.ndarray, top_inliers: np.ndarray, reference: np.ndarray,
                       min_inliers: int, weight: float) -> np.ndarray:
    """Scores with `weight * reference` taken off every class of the rows whose predicted class is not
    verified (top_inliers < min_inliers); verified rows are kept. `reference` = `reference_similarity` of
    the query to photos of the same collection (by default the query set itself: a test set of mostly
    non-landmarks). GLR 2020's winners scored against such out-of-domain samples; among unverified photos it
    ranks distinctive ones (a landmark unlike the rest) above the typical ones (another street, another
    building). Measured in bench/real.py (README "Real photos")."""
    fail = (np.asarray(top_inliers) < min_inliers)[:, None] & (labels >= 0)
    return np.where(fail, scores - weight * np.asarray(reference, np.float64)[:, None], scores).astype(np.float32)


def parallel_features(extractor, ids: list, paths: list, cache_dir, n_jobs: int, progress: bool) -> dict:
    """kit.localfeatures.base.cached_features over `n_jobs` interleaved shares of the ids, in threads
    (OpenCV's SIFT releases the GIL; the extractor keeps no per-call state)."""
    from joblib import Parallel, delayed

    from kit.localfeatures.base import cached_features

    n = max(1, min(n_jobs, len(ids)))
    parts = Parallel(n_jobs=n, prefer="threads")(
        delayed(cached_features)(extractor, ids[k::n], paths[k::n], cache_dir, progress=progress and k == 0)
        for k in range(n))
    return {i: f for part in parts for i, f in part.items()}


def pair_cache_file(cache_dir, extractor, cfg: RerankConfig):
    """Where verified pairs' inlier counts are kept: one .npz per extractor + matching setting (a changed
    setting never reads stale counts), beside the feature cache; None without a cache."""
    import hashlib
    import json

    from kit.localfeatures.base import cache_key, resolve_cache_dir

    root = resolve_cache_dir(cache_dir)
    if root is None:
        return None
    match = json.dumps([cfg.ratio, cfg.transform, cfg.ransac_threshold, cfg.robust]).encode()
    return root / cache_key(extractor) / f"pairs-{hashlib.sha1(match).hexdigest()[:12]}.npz"


def load_pairs(path) -> dict:
    if path is None or not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return dict(zip(z["pairs"].tolist(), z["inliers"].tolist()))


def save_pairs(path, pairs: dict) -> None:
    from kit.atomic import atomic_path

    if path is None or not pairs:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, pairs=np.array(list(pairs), dtype=str), inliers=np.array(list(pairs.values()), np.int32))


@dataclass
class Reranked:
    predictions: Predictions
    inliers: np.ndarray          # [Q, N] inliers of each verified neighbour
    neighbours: np.ndarray       # [Q, N] index ids
    top_inliers: np.ndarray      # [Q] max inliers among the neighbours of the predicted class
    seconds: dict
    reference: np.ndarray | None = None   # [Q] reference_similarity (None: reference term off)


def spatial_rerank(query: Predictions, knn, index_ids: np.ndarray, cfg: RerankConfig, data_dir,
                   cache_dir=None, topk: int = 5, progress: bool = True,
                   references: Predictions | None = None) -> Reranked:
    """Re-rank `query` (its embeddings) with `knn` (a fitted kit.inference.retrieval.KnnPredictor over
    the images `index_ids`): verify the top-N neighbours, score classes with `class_scores`, then lower
    the unverified rows by their similarity to `references` (default: the queries; `unverified_penalty`)."""
    import time

    from kit.inference.search import l2n
    from kit.layout import find_image
    from kit.localfeatures import build_extractor
    from kit.localfeatures.matching import verify_pairs

    if query.embeddings is None:
        raise KitError("rerank: the query prediction file has no embeddings")
    cfg.check()   # before any feature is extracted
    index_ids = np.asarray(index_ids).astype(str)
    t0 = time.perf_counter()
    qemb = l2n(query.embeddings)
    sims, rows = knn.search(query.embeddings, max(cfg.candidates, cfg.near_candidates if cfg.near_cut > 0 else 0))
    wide_sims, wide_rows = sims, rows
    sims, rows = sims[:, :cfg.candidates], rows[:, :cfg.candidates]
    n_knn = rows.shape[1]   # the kNN neighbours; class candidates are appended after them
    sims, rows = class_candidates(qemb, sims, rows, knn.xb, knn.labels, cfg.classes, cfg.per_class)
    settings = cfg.extractor_settings()
    extractor = build_extractor(settings.pop("extractor"), **settings)
    known_file = pair_cache_file(cache_dir, extractor, cfg)
    known = load_pairs(known_file)     # pairs verified by an earlier run (e.g. another embedding's neighbours)
    clock = {"features": 0.0, "matching": 0.0, "pairs": 0, "pairs_matched": 0}

    def verify(sims, rows, only=None):
        """Labels, ids and inliers of the candidates (rows [Q, N]); `only` [Q] bool: the queries verified."""
        t = time.perf_counter()
        nbr_labels = np.where(rows >= 0, knn.labels[np.maximum(rows, 0)], -1)
        nbr_ids = np.where(rows >= 0, index_ids[np.maximum(rows, 0)], "")
        nbr_labels[nbr_ids == query.ids[:, None]] = -1     # an index image never verifies itself
        if only is not None:
            nbr_labels[~only] = -1
        todo = np.argwhere(nbr_labels >= 0)
        keys = [f"{query.ids[q]}|{nbr_ids[q, n]}" for q, n in todo]
        new = [tuple(k.split("|")) for k in dict.fromkeys(keys) if k not in known]
        need = list(dict.fromkeys(i for pair in new for i in pair))
        feats = parallel_features(extractor, need, [find_image(data_dir, i) for i in need], cache_dir, cfg.threads,
                                  progress)
        t1 = time.perf_counter()
        if new:
            counts = verify_pairs(new, feats, cfg.threads, ratio=cfg.ratio, transform=cfg.transform,
                                  threshold=cfg.ransac_threshold, robust=cfg.robust)
            known.update(zip(("|".join(p) for p in new), counts.tolist()))
            save_pairs(known_file, known)
        inliers = np.zeros(sims.shape, np.int32)
        if len(todo):
            inliers[todo[:, 0], todo[:, 1]] = [known[k] for k in keys]
        clock["features"] += t1 - t
        clock["matching"] += time.perf_counter() - t1
        clock["pairs"] += len(todo)
        clock["pairs_matched"] += len(new)
        return nbr_labels, nbr_ids, inliers

    nbr_labels, nbr_ids, inliers = verify(sims, rows)
    near = None
    if cfg.near_cut > 0:   # a second look for the queries whose best pair fell just short of the cut
        best = inliers.max(axis=1, initial=0)
        near = (best >= cfg.near_cut) & (best < cfg.min_inliers)
        if near.any():
            s2, r2 = class_candidates(qemb, wide_sims, wide_rows, knn.xb, knn.labels, cfg.classes, cfg.near_per_class)
            l2, i2, n2 = verify(s2, r2, near)
            sims, nbr_labels = np.concatenate([sims, s2], 1), np.concatenate([nbr_labels, l2], 1)
            nbr_ids, inliers = np.concatenate([nbr_ids, i2], 1), np.concatenate([inliers, n2], 1)
    t2 = time.perf_counter()
    switched = None
    if cfg.fusion == "evidence":
        from kit.inference.retrieval import knn_vote

        base_labels, base_scores = knn_vote(sims[:, :n_knn], nbr_labels[:, :n_knn], topk,
                                            power=getattr(knn, "power", 1.0), agg=getattr(knn, "agg", "max"))
        labels, scores, top, switched = evidence_fusion(base_labels, base_scores, sims, inliers, nbr_labels,
                                                        cfg.weight, cfg.cap, cfg.min_inliers, cfg.margin,
                                                        cfg.switch_margin)
    else:
        labels, scores, raw = class_scores(sims, inliers, nbr_labels, cfg.weight, cfg.cap, topk, cfg.min_inliers,
                                           cfg.margin)
        top = raw[:, 0] if raw.shape[1] else np.zeros(len(labels), np.int32)
    reference = None
    if cfg.reference_weight > 0 and cfg.reference_k > 0:
        from kit.inference.search import reference_similarity

        refs = query if references is None else references
        if refs.embeddings is None:
            raise KitError("rerank: the reference prediction file has no embeddings")
        reference = reference_similarity(query.embeddings, query.ids, refs.embeddings, refs.ids, cfg.reference_k)
        scores = unverified_penalty(scores, labels, top, reference, cfg.min_inliers, cfg.reference_weight)
    pred = Predictions(query.ids, labels, scores, query.embeddings)
    return Reranked(pred, inliers, nbr_ids, top.astype(np.int32),
                    {"search_and_features": t2 - t0 - clock["matching"], "matching": clock["matching"],
                     "pairs": int(clock["pairs"]), "pairs_matched": int(clock["pairs_matched"]),
                     "second_look": None if near is None else int(near.sum()),
                     "switched": None if switched is None else int(switched.sum())}, reference)
