"""Retrieval switches (max aggregation, alpha-QE, DBA, multi-file index) and spatial re-ranking
(`kit rerank`) on hand-made vectors and synthetic landmark views."""
import cv2
import numpy as np
import pandas as pd
import pytest

from kit.cli import main
from kit.errors import KitError
from kit.inference import expansion as X
from kit.inference import retrieval as R
from kit.inference.candidates import class_candidates
from kit.inference.fusion import class_scores
from kit.inference.rerank import RerankConfig, spatial_rerank
from kit.layout import image_path
from kit.predictions import Predictions, load_predictions, save_predictions
from kit.synth import make_structure, random_homography, warp_view


def test_knn_vote_max_is_best_neighbour_per_class():
    sims = np.array([[0.9, 0.8, 0.7, 0.6]], np.float32)
    nl = np.array([[7, 3, 3, 3]])
    labels, scores = R.knn_vote(sims, nl, topk=2, agg="max")
    np.testing.assert_array_equal(labels[0], [7, 3])
    np.testing.assert_allclose(scores[0], [0.9, 0.8], atol=1e-6)
    labels, _ = R.knn_vote(sims, nl, topk=2, agg="sum")  # sum favours the class with more images
    np.testing.assert_array_equal(labels[0], [3, 7])
    with pytest.raises(KitError, match="unknown aggregation"):
        R.knn_vote(sims, nl, 1, agg="mean")


def test_dba_and_alpha_qe_hand_made():
    xb = np.array([[1, 0], [0.8, 0.6], [0, 1]], np.float32)
    # DBA k=2, alpha=1: row 0 = 1 * x0 + 0.8 * x1 (its nearest other row, sim 0.8)
    out = X.dba(xb, 2, alpha=1.0)
    np.testing.assert_allclose(out[0], R.l2n(np.array([[1 + 0.64, 0.48]]))[0], atol=1e-6)
    np.testing.assert_allclose(out[2], R.l2n(np.array([[0.48, 1 + 0.36]]))[0], atol=1e-6)
    np.testing.assert_allclose(X.dba(xb, 1), xb, atol=1e-6)             # k <= 1: no-op
    # alpha-QE k=1, alpha=2: q + sim^2 * nearest row
    q = np.array([[0.6, 0.8]], np.float32)
    np.testing.assert_allclose(X.alpha_qe(q, xb, 1, alpha=2.0)[0],
                               R.l2n(q + 0.96 ** 2 * xb[1:2])[0], atol=1e-6)
    np.testing.assert_allclose(X.alpha_qe(q, xb, 0), q, atol=1e-6)
    with pytest.raises(KitError, match="must be >= 0"):
        X.dba(xb, -1)


def test_knn_predictor_switches_change_the_vote():
    xb = np.array([[1, 0], [0.8, 0.6], [0.75, 0.66], [0, 1]], np.float32)
    yb = np.array([1, 2, 2, 3])
    q = np.array([[0.95, 0.31]], np.float32)
    plain = R.KnnPredictor(k=3, agg="sum").fit(xb, yb).predict(["q"], q, topk=1)
    best = R.KnnPredictor(k=3, agg="max").fit(xb, yb).predict(["q"], q, topk=1)
    assert plain.labels[0, 0] == 2 and best.labels[0, 0] == 1   # two 2s outvote the nearest 1
    qe = R.KnnPredictor(k=1, qe=2, qe_alpha=0.0).fit(xb, yb)
    np.testing.assert_allclose(qe.search(q, 1)[0], (R.l2n(q + xb[0] + xb[1]) @ xb[0:1].T), atol=1e-5)


def test_class_scores_inliers_reorder_and_confidence():
    sims = np.array([[0.8, 0.7, 0.6], [0.9, 0.5, 0.4]], np.float32)
    inl = np.array([[2, 40, 0], [0, 0, 3]])
    nl = np.array([[1, 2, 1], [1, 2, -1]])
    labels, scores, raw = class_scores(sims, inl, nl, weight=1.0, cap=20, topk=2, min_inliers=2)
    np.testing.assert_array_equal(raw, [[40, 2], [0, 0]])   # row 1's 3 inliers: no candidate
    # row 0: class 2 = 0.7 + 1 (capped) = 1.7; class 1 = max(0.8 + 0.1, 0.6) = 0.9
    np.testing.assert_array_equal(labels[0], [2, 1])
    np.testing.assert_allclose(scores[0], [1.7, 0.9], atol=1e-6)
    # row 1: nothing verified, order by similarity; the -1 neighbour never votes
    np.testing.assert_array_equal(labels[1], [1, 2])
    np.testing.assert_allclose(scores[1], [0.9, 0.5], atol=1e-6)
    # below min_inliers the 2 inliers of row 0 count as none
    _, scores, _ = class_scores(sims, inl, nl, weight=1.0, cap=20, topk=2, min_inliers=3)
    np.testing.assert_allclose(scores[0], [1.7, 0.8], atol=1e-6)


def test_competing_inliers_and_margin():
    from kit.inference.fusion import competing_inliers

    nl = np.array([[1, 2, 1, 3, -1]])
    inl = np.array([[12, 9, 4, 7, 50]])                    # the -1 slot is no candidate: its 50 never counts
    np.testing.assert_array_equal(competing_inliers(inl, nl), [[9, 12, 9, 12, 0]])
    sims = np.array([[0.5, 0.6, 0.4, 0.3, 0.9]])
    # raw counts: class 1 (12 inliers) verified, 0.5 + 12/30; margin 1: only 12 - 9 = 3 inliers of evidence
    labels, scores, raw = class_scores(sims, inl, nl, 1.0, 30, 3, min_inliers=10)
    assert labels[0].tolist() == [1, 2, 3] and raw[0].tolist() == [12, 9, 7]
    np.testing.assert_allclose(scores[0], [0.5 + 12 / 30, 0.6, 0.3], atol=1e-6)   # 2 and 3: unverified, best sim
    labels, scores, _ = class_scores(sims, inl, nl, 1.0, 30, 3, min_inliers=10, margin=1.0)
    np.testing.assert_allclose(scores[0, 0], 0.5 + 3 / 30, atol=1e-6)
    # weak inliers (below min_inliers) choose the class of an unverified row, its score stays the best sim
    sims2 = np.array([[0.6, 0.55, 0.1]])
    inl2, nl2 = np.array([[2, 8, 0]]), np.array([[4, 5, -1]])
    labels, scores, raw = class_scores(sims2, inl2, nl2, 1.0, 30, 2, min_inliers=10, margin=1.0)
    assert labels[0].tolist() == [5, 4] and raw[0].tolist() == [8, 2]          # 0.55 + 6/30 beats 0.6 + 0
    np.testing.assert_allclose(scores[0], [0.55, 0.6], atol=1e-6)
    with pytest.raises(KitError, match="margin=-1"):
        class_scores(sims2, inl2, nl2, 1.0, 30, 2, min_inliers=10, margin=-1.0)


def test_competing_inliers_equals_a_per_candidate_scan():
    from kit.inference.fusion import competing_inliers

    rng = np.random.default_rng(0)
    for _ in range(200):   # ties, single-class rows, empty slots, empty shapes
        q, n = rng.integers(0, 6), rng.integers(0, 8)
        nl, inl = rng.integers(-1, 4, (q, n)), rng.integers(0, 15, (q, n))
        want = [[max([inl[i, m] for m in range(n) if nl[i, m] >= 0 and nl[i, m] != nl[i, j]], default=0)
                 if nl[i, j] >= 0 else 0 for j in range(n)] for i in range(q)]
        np.testing.assert_array_equal(competing_inliers(inl, nl), np.array(want, dtype=np.int64).reshape(q, n))


def test_class_candidates_add_the_best_images_of_the_top_classes():
    emb = R.l2n(np.array([[1, 0, 0], [0.8, 0.6, 0], [0.5, 0, 0.9], [0.9, 0.4, 0], [0, 1, 0], [0, 0, 1]], np.float32))
    labels = np.array([0, 0, 0, 1, 1, 2])
    q = R.l2n(np.array([[1, 0.1, 0]], np.float32))
    sims, rows = R.SearchIndex(emb).search(q, 2)
    assert rows[0].tolist() == [0, 3]                       # the neighbours: one image of class 0, one of 1
    s2, r2 = class_candidates(q, sims, rows, emb, labels, classes=2, per_class=2)
    assert r2.shape == (1, 2 + 2 * 2)
    # class 0: its 2 best images are rows 0 (there) and 1 (added); class 1: rows 3 (there) and 4 (added)
    assert r2[0].tolist() == [0, 3, 1, 4, -1, -1]
    np.testing.assert_allclose(s2[0, 2:4], emb[[1, 4]] @ q[0], atol=1e-6)
    assert class_candidates(q, sims, rows, emb, labels, classes=0, per_class=2)[1] is rows   # off
    # class 2 is not among the neighbours' classes: never added, however many classes are asked for
    assert 5 not in class_candidates(q, sims, rows, emb, labels, classes=5, per_class=3)[1][0].tolist()


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    """GLDv2-layout folder: classes 0 and 1 with two train views each; test: a new view of class 0 and
    an unrelated structure (class 7). Embeddings are chosen so that global similarity is WRONG."""
    cv2.setNumThreads(1)
    root = tmp_path_factory.mktemp("rerank")
    data = root / "data"
    ids = {}
    for cls, seeds in ((0, (1, 2, 3)), (1, (4, 5)), (7, (6,))):
        st, mask = make_structure(cls, 0, 256, return_mask=True)
        for s in seeds:
            H = random_homography(np.random.default_rng(s), 160, 256)
            img = warp_view(st, H, 160, rng=None, clutter=False, mask=mask)
            i = f"{cls}{s}{'a' * 14}"
            split = "test" if s in (3, 6) else "train"
            path = image_path(data, split, i)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img[:, :, ::-1])
            ids[(cls, s)] = i
    train = [ids[(0, 1)], ids[(0, 2)], ids[(1, 4)], ids[(1, 5)]]
    pd.DataFrame({"id": train, "url": "", "landmark_id": [0, 0, 1, 1]}).to_csv(data / "train.csv", index=False)
    emb = R.l2n(np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0]], np.float32))
    index = save_predictions(Predictions(train, -np.ones((4, 1)), np.zeros((4, 1)), emb), root / "train.npz")
    qemb = R.l2n(np.array([[0.2, 1, 0.1], [0.1, 1, 0.2]], np.float32))  # both look like class 1 globally
    query = save_predictions(Predictions([ids[(0, 3)], ids[(7, 6)]], -np.ones((2, 1)), np.zeros((2, 1)), qemb),
                             root / "query.npz")
    return root, data, index, query


def _index_knn_query(data, index, query):
    """The views' index, a kNN (k=4, max) over it, and the query predictions."""
    idx = R.load_index([index])
    return idx, R.fit_retriever("knn", idx, data / "train.csv", k=4, agg="max"), load_predictions(query)


def test_spatial_rerank_fixes_the_class_and_ranks_verified_first(views):
    root, data, index, query = views
    idx, knn, q = _index_knn_query(data, index, query)
    before = knn.predict(q.ids, q.embeddings, topk=2)
    assert before.labels[:, 0].tolist() == [1, 1]
    cfg = RerankConfig(verifier="sift", candidates=4, threads=2, extractor_kw={"image_size": 160}, transform="homography")
    r = spatial_rerank(q, knn, idx.ids, cfg, data, root / "cache", topk=2, progress=False)
    assert r.predictions.labels[0, 0] == 0                     # verified: the true class wins
    assert r.top_inliers[0] >= 15 and r.inliers[1].max() <= 6  # unrelated structure: nothing verifies
    assert r.predictions.scores[0, 0] > 1.0 > r.predictions.scores[1, 0]
    assert r.predictions.labels[1, 0] == 1                     # unverified: similarity order kept
    assert r.seconds["pairs_matched"] == r.seconds["pairs"] == 8  # 2 queries x 4 neighbours
    again = spatial_rerank(q, knn, idx.ids, cfg, data, root / "cache", topk=2, progress=False)
    assert again.seconds["pairs_matched"] == 0                 # every pair's inliers come from the pair cache
    np.testing.assert_array_equal(again.inliers, r.inliers)


def test_kit_rerank_and_retrieve_commands(views, capsys):
    root, data, index, query = views
    out = root / "rr.npz"
    assert main(["rerank", "--query", str(query), "--index", str(index), "--labels", str(data / "train.csv"),
                 "--data-dir", str(data), "--out", str(out), "--candidates", "3", "--per-class", "0", "--image-size", "160",
                 "--cache-dir", str(root / "cache"), "--submission", str(root / "rr.csv")]) == 0
    pred = load_predictions(out)
    side = np.load(root / "rr.inliers.npz")
    assert pred.labels[0, 0] == 0 and side["top_inliers"][0] >= 15 and side["inliers"].shape == (2, 3)
    assert (root / "rr.csv").read_text().splitlines()[0] == "id,landmarks"
    # default class candidates: the 4th index image (2nd of a top class) is verified as well
    assert main(["rerank", "--query", str(query), "--index", str(index), "--labels", str(data / "train.csv"),
                 "--data-dir", str(data), "--out", str(root / "rr2.npz"), "--candidates", "3", "--image-size", "160",
                 "--cache-dir", str(root / "cache")]) == 0
    side2 = np.load(root / "rr2.inliers.npz")
    assert (side2["neighbours"] != "").sum(axis=1).tolist() == [4, 4]
    assert "reference" not in side2.files and "reference" not in side.files   # the reference term is off by default
    assert main(["rerank", "--query", str(query), "--index", str(index), "--labels", str(data / "train.csv"),
                 "--data-dir", str(data), "--out", str(root / "rr3.npz"), "--candidates", "3", "--image-size", "160",
                 "--cache-dir", str(root / "cache"), "--reference-weight", "1", "--references", str(index)]) == 0
    assert np.load(root / "rr3.inliers.npz")["reference"].shape == (2,)
    assert main(["rerank", "--query", str(query), "--index", str(index), "--labels", str(data / "train.csv"),
                 "--data-dir", str(data), "--out", str(root / "rr4.npz"), "--candidates", "3", "--image-size", "160",
                 "--cache-dir", str(root / "cache"), "--fusion", "sum", "--switch-margin", "5"]) == 0
    assert load_predictions(root / "rr4.npz").labels[0, 0] == 0
    assert main(["retrieve", "knn", "--index", str(index), str(index), "--labels", str(data / "train.csv"),
                 "--query", str(query), "--out", str(root / "knn.npz"), "--agg", "max", "--k", "2", "--dba", "2"]) == 0
    assert load_predictions(root / "knn.npz").labels[:, 0].tolist() == [1, 1]
    assert "over 4 vectors" in capsys.readouterr().out         # the index file given twice: ids kept once


def test_reference_similarity_excludes_the_own_id_and_averages_k():
    from kit.inference.search import reference_similarity

    ref = R.l2n(np.array([[1, 0], [0.8, 0.6], [0, 1]], np.float32))
    q = ref[:2]
    sim = reference_similarity(q, ["a", "b"], ref, ["a", "b", "c"], k=1)
    np.testing.assert_allclose(sim, [0.8, 0.8], atol=1e-6)          # a's best other is b, b's is a
    sim2 = reference_similarity(q, ["x", "y"], ref, ["a", "b", "c"], k=2)   # other ids: nothing excluded
    np.testing.assert_allclose(sim2, [(1 + 0.8) / 2, (1 + 0.8) / 2], atol=1e-6)
    assert reference_similarity(q, ["a", "b"], ref[:0], [], k=3).tolist() == [0, 0]
    assert reference_similarity(q[:1], ["a"], ref[:1], ["a"], k=3).tolist() == [0]   # only itself: none left


def test_unverified_penalty_lowers_only_unverified_rows():
    from kit.inference.fusion import unverified_penalty

    scores = np.array([[1.5, 0.7], [0.8, 0.6], [0.0, 0.0]], np.float32)
    labels = np.array([[3, 1], [2, 4], [-1, -1]])
    out = unverified_penalty(scores, labels, np.array([25, 4, 0]), np.array([0.9, 0.5, 0.5]), 10, 1.0)
    np.testing.assert_allclose(out[0], [1.5, 0.7])                    # verified: kept
    np.testing.assert_allclose(out[1], [0.3, 0.1], atol=1e-6)         # unverified: minus weight x reference
    np.testing.assert_allclose(out[2], [0.0, 0.0])                    # no prediction: untouched
    np.testing.assert_allclose(unverified_penalty(scores, labels, np.array([25, 4, 0]), np.ones(3), 10, 0.0), scores)


def test_spatial_rerank_reference_term(views):
    """Only the unverified row moves, by weight x its similarity to the references (own id excluded)."""
    root, data, index, query = views
    idx, knn, q = _index_knn_query(data, index, query)
    base = dict(verifier="sift", candidates=4, threads=2, extractor_kw={"image_size": 160}, transform="homography")
    off = spatial_rerank(q, knn, idx.ids, RerankConfig(**base, reference_weight=0), data, root / "cache", topk=2,
                         progress=False)
    assert off.reference is None
    on = spatial_rerank(q, knn, idx.ids, RerankConfig(**base, reference_k=1, reference_weight=1.0), data,
                        root / "cache", topk=2,
                        progress=False)
    cos = float(q.embeddings[0] @ q.embeddings[1])                   # each query's reference: the other query
    np.testing.assert_allclose(on.reference, [cos, cos], atol=1e-5)
    np.testing.assert_allclose(on.predictions.scores[0], off.predictions.scores[0])          # verified row kept
    np.testing.assert_allclose(on.predictions.scores[1], off.predictions.scores[1] - cos, atol=1e-5)
    refs = Predictions(["r"], -np.ones((1, 1)), np.zeros((1, 1)), R.l2n(np.array([[0, 0, 1]], np.float32)))
    other = spatial_rerank(q, knn, idx.ids, RerankConfig(**base, reference_weight=1.0), data, root / "cache", topk=2,
                           progress=False,
                           references=refs)
    np.testing.assert_allclose(other.reference, q.embeddings[:, 2], atol=1e-5)   # cosine to the one reference


def test_evidence_fusion_only_adds_to_the_knn_result():
    """Unverified rows keep their kNN class and score (so their order); weak evidence for another class
    changes nothing; the kNN class verified lifts its row; only strong evidence re-classifies."""
    from kit.inference.fusion import evidence_fusion

    base_l = np.array([[4, 5], [4, 5], [1, 2], [1, 2], [7, 8]])
    base_s = np.array([[0.6, 0.55], [0.7, 0.5], [0.5, 0.4], [0.5, 0.4], [0.3, 0.2]], np.float32)
    nl = np.array([[4, 5, -1], [4, 5, 4], [1, 2, 2], [1, 2, 2], [7, 8, 8]])
    sims = np.array([[0.6, 0.55, 0], [0.7, 0.5, 0.3], [0.5, 0.4, 0.3], [0.5, 0.4, 0.3], [0.3, 0.2, 0.1]])
    inl = np.array([[2, 8, 0],       # weak inliers for class 5: not verified
                    [3, 14, 0],      # class 5 verified, but only 11 inliers beyond class 4 < switch margin 12
                    [25, 6, 4],      # the kNN class verified with a margin of 19
                    [7, 31, 9],      # class 2 verified with a margin of 24 >= 12: it replaces class 1
                    [0, 0, 0]])      # nothing
    labels, scores, top, switched = evidence_fusion(base_l, base_s, sims, inl, nl, weight=1.0, cap=30,
                                                    min_inliers=10, margin=1.0, switch_margin=12)
    for r in (0, 1, 4):   # the kNN row, unchanged
        np.testing.assert_array_equal(labels[r], base_l[r])
        np.testing.assert_allclose(scores[r], base_s[r], atol=1e-6)
    np.testing.assert_array_equal(labels[2], [1, 2])
    np.testing.assert_allclose(scores[2], [0.5 + 19 / 30, 0.4], atol=1e-6)
    np.testing.assert_array_equal(labels[3], [2, 1])
    np.testing.assert_allclose(scores[3], [0.5 + 24 / 30, 0.5], atol=1e-6)   # kNN score + 24 / 30; class 1 next
    assert switched.tolist() == [False, False, False, True, False]
    assert top.tolist() == [2, 3, 25, 31, 0]
    # the previous fusion (sum) re-classified the weakly matched rows 0 and 1
    old, _, _ = class_scores(sims, inl, nl, 1.0, 30, 2, min_inliers=10, margin=1.0)
    assert old[0, 0] == 5 and old[1, 0] == 5
    assert (scores[:, 0] >= base_s[:, 0] - 1e-6).all()     # a row never falls below its kNN score


def test_spatial_rerank_unverified_row_is_the_knn_row(views):
    root, data, index, query = views
    idx, knn, q = _index_knn_query(data, index, query)
    before = knn.predict(q.ids, q.embeddings, topk=2)
    cfg = RerankConfig(verifier="sift", candidates=4, threads=2, extractor_kw={"image_size": 160})
    r = spatial_rerank(q, knn, idx.ids, cfg, data, root / "cache", topk=2, progress=False)
    assert r.inliers[1].max() < cfg.min_inliers
    np.testing.assert_array_equal(r.predictions.labels[1], before.labels[1])
    np.testing.assert_allclose(r.predictions.scores[1], before.scores[1], atol=1e-6)
    with pytest.raises(KitError, match="unknown fusion"):
        spatial_rerank(q, knn, idx.ids, RerankConfig(fusion="vote"), data, root / "cache", progress=False)


def test_one_verification_setting_for_rerank_and_filters():
    """`kit rerank` and `kit filter sift|delf` verify pairs with one Verification and its defaults (the
    re-rank's: ratio 0.9, homography, MAGSAC, RootSIFT at 512 px, 1000 keypoints); the filter's own
    threshold stays its own."""
    import dataclasses

    from kit.filters.local import DelfFilter, SiftFilter
    from kit.localfeatures.verification import Verification

    d = Verification()
    assert (d.ratio, d.transform, d.robust, d.ransac_threshold) == (0.9, "homography", "magsac", 8.0)
    assert d.extractor_settings() == {"extractor": "sift", "image_size": 512, "max_keypoints": 1000}
    shared = {f.name for f in dataclasses.fields(Verification)} - {"threads"}
    r = RerankConfig()
    assert isinstance(r, Verification) and all(getattr(r, k) == getattr(d, k) for k in shared)
    f = SiftFilter()
    v = f.verification
    assert all(getattr(v, k) == getattr(d, k) for k in shared)
    assert f.defaults["threshold"] == 10.0                      # the filter's own cut
    assert DelfFilter().verification.extractor_settings() == {"extractor": "delf", "image_size": 320}
    given = SiftFilter(ratio=0.8, transform="affine", robust="ransac", extractor_kw={"image_size": 256}).verification
    assert (given.ratio, given.transform, given.robust, given.extractor_settings()["image_size"]) == (
        0.8, "affine", "ransac", 256)
