import cv2
import numpy as np
import pandas as pd
import pytest

from kit.cli import main
from kit.errors import KitError
from kit.filters.base import demote_offset, rescore
from kit.filters.centroid import CentroidFilter
from kit.filters.chain import build_filter, load_filter, save_filter
from kit.filters.distractor import DistractorFilter
from kit.filters.local import LocalFilter
from kit.truth import gap_top1
from kit.layout import image_path
from kit.localfeatures.base import cache_path, cached_features
from kit.localfeatures.sift import SiftExtractor
from kit.metrics import gap
from kit.predictions import Predictions, load_predictions, save_predictions
from kit.synth import make_ids, make_structure, random_homography, warp_view


def preds(labels, scores, emb=None, ids=None):
    ids = ids if ids is not None else [f"{i:016x}" for i in range(len(labels))]
    return Predictions(ids, np.asarray(labels).reshape(len(ids), -1), np.asarray(scores).reshape(len(ids), -1), emb)


def test_demote_puts_failing_rows_below_every_passing_row_in_order():
    p = preds([[1, 2], [3, 4], [5, 6], [-1, -1]], [[0.9, 0.1], [0.5, 0.2], [0.2, 0.1], [0, 0]])
    assert demote_offset(p.scores[:3, 0]) == pytest.approx(1.7)
    out = rescore(p, np.array([False, True, True, False]))
    assert np.allclose(out.scores[:, 0], [0.9 - 1.7, 0.5, 0.2, 0.0])
    assert np.allclose(out.scores[0], [0.9 - 1.7, 0.1 - 1.7])             # the whole row moves, order kept
    assert out.labels.tolist() == p.labels.tolist()
    assert out.scores[0, 0] < out.scores[2, 0]
    dropped = rescore(p, np.array([False, True, True, False]), mode="drop")
    assert dropped.labels[:, 0].tolist() == [-1, 3, 5, -1] and dropped.scores[0].tolist() == [0, 0]
    boosted = rescore(p, np.array([True, True, False, False]), bonus=np.array([0.5, 0.25, 9, 9]))
    assert np.allclose(boosted.scores[:, 0], [1.4, 0.75, 0.2 - 1.7, 0.0])
    with pytest.raises(KitError, match="unknown mode"):
        rescore(p, np.ones(4, bool), mode="remove")


def test_fitting_the_inlier_threshold_raises_gap_on_a_hand_made_case():
    # two non-landmarks predicted with high scores (few inliers), two landmarks right with low scores
    p = preds([10, 11, 12, 13], [0.9, 0.8, 0.5, 0.4])
    true = np.array([-1, -1, 12, 13])
    inliers = np.array([2.0, 0.0, 30.0, 25.0])
    # before: ranks wrong, wrong, right (P=1/3), right (P=2/4) -> (1/3 + 1/2) / 2
    assert gap_top1(p, true) == pytest.approx(5 / 12)
    f = LocalFilter(extractor="sift").fit(p, true, signal=inliers)
    assert 2 < f.params["threshold"] <= 25 and f.fit_report["gap_after"] == pytest.approx(1.0)
    out = f.apply(p, inliers).predictions
    assert gap(out.labels[:, 0], out.scores[:, 0], true) == pytest.approx(1.0)
    assert f.fit_report["gap_before"] == pytest.approx(5 / 12)


def test_distractor_signal_excludes_the_same_image_and_fit_subtracts_it():
    d_emb = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1]], np.float32)
    dist = preds([-1, -1, -1], [0, 0, 0], d_emb, ids=["d0", "d1", "d2"])
    q = preds([1, 2, 3], [0.9, 0.6, 0.5], np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], np.float32),
              ids=["d0", "q1", "q2"])
    f = DistractorFilter(k=2, distractors="unused")
    f.distractor_set = dist
    sig = f.signal(q)
    # d0 (itself a distractor): its own row is skipped -> mean(0.8, 0) ; q1: mean(0.6, 0) ; q2: mean(1, 0.8)
    assert np.allclose(sig, [0.4, 0.3, 0.9])
    out = f.apply(q, sig, alpha=1.0).predictions
    assert np.allclose(out.scores[:, 0], [0.5, 0.3, -0.4])
    true = np.array([-1, 2, -1])
    f.fit(q, true, sig)
    assert gap_top1(f.apply(q, sig).predictions, true) == pytest.approx(1.0) and f.params["alpha"] > 0


def test_centroid_signal_is_cosine_to_the_predicted_class_centroid():
    f = CentroidFilter()
    f.centroids = (np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32), np.array([7, 8, 8]))
    q = preds([7, 8, -1], [0.9, 0.5, 0], np.array([[0.6, 0.8], [1, 0], [1, 0]], np.float32))
    assert np.allclose(f.signal(q), [0.6, 0.6, -1.0])                       # class 8: max(0, 0.6)
    result = f.apply(q, eta=0.7)  # the signal computed, and timed
    assert result.predictions.scores[:2, 0].max() < 0 and result.passed.tolist() == [False, False, False]
    assert np.allclose(result.signal, [0.6, 0.6, -1.0]) and set(result.seconds) == {"signal"}
    assert f.params == {"eta": -1.0} and f.apply(q, result.signal).passed.tolist() == [True, True, True]


def test_save_and_load_filter_round_trip(tmp_path):
    chain = build_filter("sift+distractor", "drop", {"neighbours": 4, "distractors": "d.npz", "k": 3})
    chain.filters[0].params["threshold"] = 12.0
    chain.filters[1].params.update(alpha=0.5, tau=0.9)
    back = load_filter(save_filter(chain, tmp_path / "f.json"), {"distractors": "other.npz"})
    assert back.name == "sift+distractor"
    assert back.filters[0].params == {"threshold": 12.0, "boost": 0.0} and back.filters[0].mode == "drop"
    assert back.filters[0].settings["neighbours"] == 4
    assert back.filters[1].params == {"alpha": 0.5, "tau": 0.9} and back.filters[1].settings["distractors"] == "other.npz"
    with pytest.raises(KitError, match="unknown filter 'orb'"):
        build_filter("sift+orb")


class CountingSift(SiftExtractor):
    calls = 0

    def extract(self, images):
        CountingSift.calls += len(images)
        return super().extract(images)


def write_view(root, split, image_id, class_id, seed):
    st, mask = make_structure(class_id, 0, 256, return_mask=True)
    img = warp_view(st, random_homography(np.random.default_rng(seed), 128, 256), 128, rng=None, clutter=False,
                    mask=mask)
    path = image_path(root, split, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def test_feature_cache_is_hit_on_the_second_run(tmp_path):
    paths = [write_view(tmp_path, "train", f"abc{i}", 0, i) for i in range(2)]
    ex = CountingSift(image_size=128)
    first = cached_features(ex, ["abc0", "abc1"], paths, tmp_path / "cache", progress=False)
    assert CountingSift.calls == 2 and cache_path(tmp_path / "cache", ex, "abc1").is_file()
    second = cached_features(ex, ["abc0", "abc1"], paths, tmp_path / "cache", progress=False)
    assert CountingSift.calls == 2                                           # nothing extracted again
    assert np.array_equal(first["abc1"].descriptors, second["abc1"].descriptors)
    other = CountingSift(image_size=96)                                      # new config -> new cache key
    cached_features(other, ["abc0"], paths[:1], tmp_path / "cache", progress=False)
    assert CountingSift.calls == 3


def test_extractors_get_large_jpegs_decoded_at_their_working_size(tmp_path):
    """A large JPEG reaches an extractor at a reduced decode scale whose shorter side still covers image_size."""
    big = cv2.resize(cv2.cvtColor(np.asarray(make_structure(0, 0, 256)), cv2.COLOR_RGB2BGR), (1600, 1200))
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), big)
    shapes = []

    class Recording(SiftExtractor):
        def extract(self, images):
            shapes.extend(im.shape for im in images)
            return super().extract(images)

    feats = cached_features(Recording(image_size=256), ["big"], [path], None, progress=False)
    cached_features(Recording(image_size=700), ["big"], [path], None, progress=False)
    assert shapes == [(300, 400, 3), (1200, 1600, 3)]  # 1200 / 4 >= 256 (/ 8 is not); 1200 / 2 < 700: full size
    full = SiftExtractor(image_size=256).extract([cv2.cvtColor(big, cv2.COLOR_BGR2RGB)])[0]
    assert abs(len(feats["big"]) - len(full)) <= 0.2 * len(full)  # the same working frame, about as many keypoints


def test_cli_sift_filter_fits_on_val_and_lifts_gap(tmp_path, capsys):
    cv2.setNumThreads(1)
    ids = make_ids(np.random.default_rng(1), 10)
    train, test = ids[:4], ids[4:]
    for k, i in enumerate(train):                                           # two classes, two photos each
        write_view(tmp_path, "train", i, k % 2, 10 + k)
    pd.DataFrame({"id": train, "landmark_id": [50, 51, 50, 51]}).to_csv(tmp_path / "train.csv", index=False)
    # test: two right landmark views (low scores), four other structures predicted as 50/51 (high scores)
    classes = [0, 1, 5, 6, 7, 8]
    for i, c, s in zip(test, classes, range(20, 26)):
        write_view(tmp_path, "test", i, c, s)
    p = preds([50, 51, 50, 51, 50, 51], [0.3, 0.2, 0.9, 0.8, 0.7, 0.6], ids=test)
    save_predictions(p, tmp_path / "val.npz")
    pd.DataFrame({"id": test, "landmarks": ["50", "51", "", "", "", ""]}).to_csv(tmp_path / "sol.csv", index=False)
    args = ["filter", "sift", "--query", str(tmp_path / "val.npz"), "--out", str(tmp_path / "out.npz"), "--data-dir", str(tmp_path),
            "--fit-on", str(tmp_path / "val.npz"), "--solution", str(tmp_path / "sol.csv"), "--candidates", "2",
            "--image-size", "128", "--cache-dir", str(tmp_path / "cache"), "--submission", str(tmp_path / "sub.csv")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "s/image" in out and "GAP 0.2667 -> 1.0000" in out
    res = load_predictions(tmp_path / "out.npz")
    assert (res.scores[:2, 0] > res.scores[2:, 0].max()).all()
    assert (tmp_path / "out.filter.json").is_file() and (tmp_path / "sub.csv").is_file()
    # reuse the fitted filter with --drop: only the two verified rows keep a prediction
    assert main(["filter", "sift", "--query", str(tmp_path / "val.npz"), "--out", str(tmp_path / "o2.npz"), "--drop",
                 "--load", str(tmp_path / "out.filter.json"), "--data-dir", str(tmp_path)]) == 0
    assert load_predictions(tmp_path / "o2.npz").labels[:, 0].tolist() == [50, 51, -1, -1, -1, -1]
    assert main(["filter", "sift", "--query", str(tmp_path / "val.npz"), "--out", str(tmp_path / "o3.npz"),
                 "--fit-on", str(tmp_path / "val.npz")]) == 2


def test_filter_stage_scores_validation_cross_fitted():
    """Each validation row is rescored by the filter fitted on the other half, so a threshold that only fits its
    own half does not inflate validation GAP."""
    from kit.filters.chain import Chain
    from kit.inference.calibration import halves
    from kit.pipeline.stages.filtering import by_hand, cross_applied, fitted

    n = 60
    ids = [f"{i:016x}" for i in range(n)]
    half = halves(ids)
    rng = np.random.default_rng(0)
    sig = rng.uniform(0.0, 1.0, n)                     # cosine to class 7's centroid [1, 0]
    emb = np.stack([sig, np.sqrt(1 - sig ** 2)], axis=1).astype(np.float32)
    cut = np.where(half == 0, 0.3, 0.7)                # the halves disagree on where landmarks start
    true = np.where(sig > cut, 7, -1)
    pred = preds(np.full(n, 7), rng.uniform(0.5, 1.0, n), emb, ids=ids)

    def chain():
        f = CentroidFilter()
        f.centroids = (np.array([[1.0, 0.0]], np.float32), np.array([7]))
        return Chain([f])

    crossed = [by_hand(fitted(chain(), pred, true, half != h), {}) for h in (0, 1)]
    alone = [fitted(chain(), pred.subset(np.flatnonzero(half != h)), true[half != h], np.ones((half != h).sum(), bool))
             for h in (0, 1)]
    assert [c.filters[0].params for c in crossed] == [a.filters[0].params for a in alone]   # fitted on its half only
    assert 0.5 < crossed[0].filters[0].params["eta"] < 0.8 and 0.2 < crossed[1].filters[0].params["eta"] < 0.5
    out = cross_applied(crossed, pred)
    for h in (0, 1):
        mine = crossed[h].apply(pred).predictions
        assert np.allclose(out.scores[half == h], mine.scores[half == h])
    in_sample = chain()
    in_sample.fit(pred, true)
    assert gap_top1(out, true) < gap_top1(in_sample.apply(pred).predictions, true)
