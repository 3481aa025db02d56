import cv2
import numpy as np
import pytest

from kit.errors import KitError
from kit.localfeatures.sift import SiftExtractor
from kit.localfeatures.matching import ClassRows, count_inliers, match_descriptors, ransac_inliers
from kit.synth import make_structure, random_homography, warp_view

SIZE = 128


def views(class_id: int, seeds=(1, 2)):
    """Clean views of one synthetic structure and the homographies (structure px -> view px) that made them."""
    st, mask = make_structure(class_id, 0, 256, return_mask=True)
    out = []
    for s in seeds:
        H = random_homography(np.random.default_rng(s), SIZE, 256)
        out.append((warp_view(st, H, SIZE, rng=None, clutter=False, mask=mask), H))
    return out


def test_match_descriptors_mutual_and_ratio():
    d1 = np.eye(4, dtype=np.float32)[:3]                                   # rows e0, e1, e2
    d2 = np.eye(4, dtype=np.float32)[[2, 0, 3, 1]] * 0.99 + 0.01           # e2, e0, e3, e1 (perturbed)
    assert sorted(map(tuple, match_descriptors(d1, d2))) == [(0, 1), (1, 3), (2, 0)]
    # e0 has two identical candidates in d3: the ratio test rejects it, e1 still matches
    d3 = np.eye(4, dtype=np.float32)[[0, 0, 1, 3]]
    assert list(map(tuple, match_descriptors(d1[:2], d3))) == [(1, 2)]
    assert match_descriptors(d1[:1], d2).shape == (0, 2)                   # fewer than 2 descriptors


def test_ransac_counts_the_points_of_the_model():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 200, (40, 2)).astype(np.float32)
    A = np.array([[0.9, -0.2, 15.0], [0.25, 1.1, -7.0]], np.float32)
    moved = pts @ A[:, :2].T + A[:, 2]
    outliers = rng.uniform(0, 200, (15, 2)).astype(np.float32)
    src = np.vstack([pts, rng.uniform(0, 200, (15, 2)).astype(np.float32)])
    dst = np.vstack([moved, outliers])
    assert ransac_inliers(src, dst, "affine", 3.0) == 40
    assert ransac_inliers(src, dst, "homography", 3.0) == 40
    assert ransac_inliers(src[:2], dst[:2], "affine") == 0                 # too few points for a model
    with pytest.raises(KitError, match="unknown transform"):
        ransac_inliers(src, dst, "similarity")


def test_sift_inliers_high_on_two_views_and_near_zero_on_unrelated():
    cv2.setNumThreads(1)
    (a, Ha), (b, Hb) = views(0)
    (c, _), = views(7, seeds=(3,))
    fa, fb, fc = SiftExtractor(image_size=SIZE).extract([a, b, c])
    same, other = count_inliers(fa, fb), count_inliers(fa, fc)
    assert same >= 15 and other <= 5, (same, other)
    # RANSAC's homography inliers are (nearly) the matches that the known homography H_b H_a^-1 explains
    pairs = match_descriptors(fa.descriptors, fb.descriptors)
    H = Hb @ np.linalg.inv(Ha)
    proj = cv2.perspectiveTransform(fa.keypoints[pairs[:, 0]].reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2)
    true = int((np.linalg.norm(proj - fb.keypoints[pairs[:, 1]], axis=1) < 8).sum())
    found = count_inliers(fa, fb, transform="homography")
    assert true >= 30 and abs(found - true) <= 0.1 * true, (found, true)


def test_class_rows_nearest_by_cosine_within_the_class():
    labels = np.array([5, 7, 5, 5, 7])
    emb = np.array([[1, 0], [1, 0], [0, 1], [0.8, 0.6], [0.6, 0.8]], np.float32)
    q = np.array([0.6, 0.8], np.float32)
    # class 5 rows 0, 2, 3 have cosines 0.6, 0.8, 0.96 with q
    rows = ClassRows(labels)
    assert rows.nearest(5, q, emb, 2).tolist() == [3, 2]
    assert rows.nearest(7, q, emb, 5).tolist() == [4, 1]
    assert rows.nearest(9, q, emb, 3).tolist() == []
    assert rows.nearest(5, None, None, 2).tolist() == [0, 2]   # no embeddings: first rows
