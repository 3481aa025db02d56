"""kit synth: layout, counts, long tail, determinism, non-landmarks, and the geometry of the views."""
from __future__ import annotations

import hashlib
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from kit.cli import main
from kit.layout import image_path
from kit.synth import (generate, long_tail_counts, make_ids, make_structure, plan, random_homography,
                       render_view, warp_view)

TINY = dict(classes=5, images=60, test_images=20, size=64, distractors=12, nonlandmark_frac=0.8, seed=3, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = generate(out, workers=1, **TINY)
    return out, summary


def read(out, name):
    return pd.read_csv(out / name, dtype=str, keep_default_na=False)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_long_tail_counts_hand_computed():
    # free = 10 - 2*3 = 4 shared as 1 : 1/2 : 1/3 -> 2.18, 1.09, 0.73; +2 each -> 4.18, 3.09, 2.73;
    # floors 4, 3, 2 sum to 9, the one left over goes to the largest remainder (0.73).
    assert long_tail_counts(10, 3, exponent=1.0, min_count=2).tolist() == [4, 3, 3]
    c = long_tail_counts(3000, 60, exponent=1.1)
    assert c.sum() == 3000 and c.min() >= 2 and (np.diff(c) <= 0).all()
    assert c[0] > 500 and np.median(c) < 30           # a few classes with hundreds, most with a handful


def test_long_tail_counts_rejects_too_few_images():
    from kit.errors import KitError
    with pytest.raises(KitError, match="too few"):
        long_tail_counts(5, 3)


def test_ids_unique_hex_and_deterministic():
    a = make_ids(np.random.default_rng(1), 500)
    assert len(set(a)) == 500 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in a)
    assert a == make_ids(np.random.default_rng(1), 500)


def test_layout_and_counts(tiny):
    out, summary = tiny
    train, test, sub = read(out, "train.csv"), read(out, "test_solution.csv"), read(out, "sample_submission.csv")
    assert list(train.columns) == ["id", "url", "landmark_id"] and len(train) == 60
    assert list(test.columns) == ["id", "landmarks"] and len(test) == 20
    assert list(sub.columns) == ["id", "landmarks"] and sub.id.tolist() == test.id.tolist()
    ids = train.id.tolist() + test.id.tolist()
    assert len(set(ids)) == 80 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert train.landmark_id.nunique() == 5
    for split, frame in (("train", train), ("test", test)):
        for i in frame.id:
            p = image_path(out, split, i)
            assert p.parts[-4:-1] == (i[0], i[1], i[2])
        img = cv2.imread(str(image_path(out, split, frame.id.iloc[0])))
        assert img.shape == (64, 64, 3)
    assert len(list((out / "train").rglob("*.jpg"))) == 60 and len(list((out / "test").rglob("*.jpg"))) == 20
    assert not list(out.rglob("*.tmp*"))
    assert summary["train_images"] == 60 and summary["test_nonlandmark_images"] == 16


def test_long_tail_in_train_csv(tiny):
    out, _ = tiny
    counts = read(out, "train.csv").landmark_id.value_counts().sort_values(ascending=False).tolist()
    assert counts == long_tail_counts(60, 5, 1.1).tolist()


def test_solution_empty_exactly_for_nonlandmarks(tiny):
    out, _ = tiny
    sol = read(out, "test_solution.csv")
    _, planned = plan(5, 60, 20, 0.8, seed=3)
    assert sol.id.tolist() == planned.id.tolist()
    assert ((sol.landmarks == "") == (planned.landmark_id < 0).to_numpy()).all()
    assert (sol.landmarks == "").sum() == 16
    train_classes = set(read(out, "train.csv").landmark_id)
    assert set(sol.landmarks[sol.landmarks != ""]) <= train_classes


def test_train_clean_lists_the_non_noise_images(tiny):
    out, _ = tiny
    train, clean = read(out, "train.csv"), read(out, "train_clean.csv")
    planned, _ = plan(5, 60, 20, 0.8, seed=3)
    clean_ids = {i for row in clean.images for i in row.split()}
    assert clean_ids == set(planned.id[~planned.noise]) and len(clean_ids) == 60 - 3   # 5% of 60 noisy
    lm = dict(zip(train.id, train.landmark_id))
    assert all(lm[i] == row.landmark_id for row in clean.itertuples() for i in row.images.split())


def test_same_seed_same_bytes_any_worker_count(tiny, tmp_path):
    out, _ = tiny
    generate(tmp_path, workers=2, **TINY)
    for name in ("train.csv", "test_solution.csv", "sample_submission.csv", "train_clean.csv"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
    for split, frame in (("train", read(out, "train.csv")), ("test", read(out, "test_solution.csv"))):
        for i in frame.id:
            assert digest(image_path(tmp_path, split, i)) == digest(image_path(out, split, i))


def test_other_seed_other_data_and_test_views_are_new(tiny):
    out, _ = tiny
    a, _ = plan(5, 60, 20, 0.8, seed=3)
    b, _ = plan(5, 60, 20, 0.8, seed=4)
    assert not set(a.id) & set(b.id)
    train_hashes = {digest(image_path(out, "train", i)) for i in read(out, "train.csv").id}
    assert not train_hashes & {digest(image_path(out, "test", i)) for i in read(out, "test_solution.csv").id}


def test_nonlandmark_fraction_and_test_class_mix():
    _, test = plan(classes=20, images=400, test_images=300, nonlandmark_frac=0.3, seed=0)
    assert (test.landmark_id < 0).sum() == 90
    train, _ = plan(classes=20, images=400, test_images=300, nonlandmark_frac=0.3, seed=0)
    tc, te = train.landmark_id.value_counts(), test.landmark_id[test.landmark_id >= 0].value_counts()
    # test classes ~ sqrt(train count): rare classes appear, and the head is flatter than in train
    assert te.index.nunique() >= 15
    assert te.max() / te.sum() < tc.max() / tc.sum()
    _, all_lm = plan(classes=3, images=30, test_images=10, nonlandmark_frac=0.0, seed=0)
    assert (all_lm.landmark_id >= 0).all()


def test_warp_view_puts_a_point_where_h_says():
    s = np.zeros((128, 128, 3), np.uint8)
    s[39:42, 79:82] = 255                                  # a bright dot centred at (80, 40)
    H = random_homography(np.random.default_rng(0), 64, 128)
    view = warp_view(s, H, 64, rng=None, clutter=False)
    x, y = cv2.perspectiveTransform(np.float32([[[80, 40]]]), H)[0, 0]
    yy, xx = np.unravel_index(np.argmax(view[..., 0]), view.shape[:2])
    assert 0 <= x < 64 and 0 <= y < 64
    assert abs(xx - x) <= 1.0 and abs(yy - y) <= 1.0


def _patch_corr(structure, mask, view, H):
    """Correlation of view pixels with the (blurred) structure pixels H maps them from."""
    inner = cv2.erode(mask, np.ones((7, 7), np.uint8)) > 0
    ys, xs = np.nonzero(inner)
    pts = np.float32(np.stack([xs, ys], 1))[::7]
    proj = cv2.perspectiveTransform(pts[None], H)[0]
    ok = ((proj >= 0) & (proj <= view.shape[0] - 1)).all(1)
    src = cv2.GaussianBlur(cv2.cvtColor(structure, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    dst = cv2.cvtColor(view, cv2.COLOR_RGB2GRAY).astype(np.float32)
    a = src[pts[ok, 1].astype(int), pts[ok, 0].astype(int)]
    b = cv2.remap(dst, proj[ok, 0][:, None], proj[ok, 1][:, None], cv2.INTER_LINEAR)[:, 0]
    return float(np.corrcoef(a, b)[0, 1])


def test_warped_structure_matches_canonical_pixels():
    for class_id in (0, 1, 2):
        s, m = make_structure(class_id, 0, 128, return_mask=True)
        rng = np.random.default_rng(class_id)
        H = random_homography(rng, 64, 128)
        view = warp_view(s, H, 64, rng=None, clutter=True, mask=m)
        wrong = random_homography(rng, 64, 128)
        assert _patch_corr(s, m, view, H) > 0.8
        assert _patch_corr(s, m, view, wrong) < 0.4


def test_make_structure_is_deterministic_and_classes_differ():
    a, ma = make_structure(7, 0, 96, return_mask=True)
    assert a.dtype == np.uint8 and a.shape == (96, 96, 3) and ma.shape == (96, 96)
    assert np.array_equal(a, make_structure(7, 0, 96))
    assert not np.array_equal(a, make_structure(8, 0, 96))
    assert (a[ma == 0] == 0).all() and 0.05 < (ma > 0).mean() < 0.95


def _ransac_inliers(a, b):
    sift = cv2.SIFT_create()
    ka, da = sift.detectAndCompute(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None)
    kb, db = sift.detectAndCompute(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return 0, None
    good = [m for m, n in cv2.BFMatcher().knnMatch(da, db, k=2) if m.distance < 0.8 * n.distance]
    if len(good) < 4:
        return 0, None
    pa = np.float32([ka[m.queryIdx].pt for m in good])
    pb = np.float32([kb[m.trainIdx].pt for m in good])
    H, inl = cv2.findHomography(pa, pb, cv2.RANSAC, 4.0)
    return (int(inl.sum()), H) if H is not None else (0, None)


def test_sift_ransac_recovers_the_known_homography_between_two_photos():
    """Two cluttered, occluded, relit photos of one landmark: RANSAC finds H2 @ inv(H1); others don't match."""
    recovered, same, other = 0, [], []
    for class_id in (0, 1, 3, 5, 7, 10):
        s, m = make_structure(class_id, 0, 256, return_mask=True)
        rng = np.random.default_rng(class_id)
        v1, H1 = render_view(s, rng, 128, m)
        v2, H2 = render_view(s, rng, 128, m)
        n, H = _ransac_inliers(v1, v2)
        same.append(n)
        if H is not None:
            p1 = cv2.perspectiveTransform(np.float32(np.argwhere(m > 0)[::97, ::-1])[None], H1)[0]
            p1 = p1[((p1 >= 0) & (p1 < 128)).all(1)][None]
            err = np.linalg.norm(cv2.perspectiveTransform(p1, H) - cv2.perspectiveTransform(p1, H2 @ np.linalg.inv(H1)), axis=2)
            recovered += int(np.median(err) < 2.0)
        o, mo = make_structure(class_id + 100, 0, 256, return_mask=True)
        other.append(_ransac_inliers(v1, render_view(o, rng, 128, mo)[0])[0])
    assert recovered >= 4, (same, recovered)
    assert np.median(same) >= 2 * max(np.median(other), 4), (same, other)


def test_cli_writes_data_and_prints_one_line(tmp_path, capsys):
    rc = main(["synth", "--out-dir", str(tmp_path), "--classes", "3", "--images", "9", "--test-images", "5",
               "--size", "32", "--workers", "1", "--seed", "1"])
    line = capsys.readouterr().out.strip()
    assert rc == 0 and "\n" not in line and line.startswith("synth: 3 classes, 9 train images")
    assert len(read(tmp_path, "train.csv")) == 9 and len(read(tmp_path, "test_solution.csv")) == 5
    rc = main(["synth", "--out-dir", str(tmp_path), "--classes", "3", "--images", "9", "--test-images", "5",
               "--size", "32", "--workers", "1", "--seed", "1", "--reuse"])
    assert rc == 0 and capsys.readouterr().out.strip().endswith("(reused)")


@pytest.mark.parametrize("args, message", [
    (["--classes", "10", "--images", "5"], "too few"),
    (["--nonlandmark-frac", "1.5"], "nonlandmark-frac"),
    (["--size", "8"], "--size"),
])
def test_cli_bad_options_give_one_line_errors(tmp_path, capsys, args, message):
    rc = main(["synth", "--out-dir", str(tmp_path), "--workers", "1"] + args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and "\n" not in err


def test_distractors_are_nonlandmark_images_disjoint_from_train_and_test(tiny):
    out, summary = tiny
    d = pd.read_csv(out / "distractors.csv", dtype=str)
    assert len(d) == summary["distractor_images"] == 12 and d.id.is_unique
    train = pd.read_csv(out / "train.csv", dtype=str)
    test = pd.read_csv(out / "test_solution.csv", dtype=str)
    assert not set(d.id) & (set(train.id) | set(test.id))
    assert all(image_path(out, "distractors", i).is_file() for i in d.id)
