"""Class selection, stratified folds, the 90/6/4 holdout, and `kit folds` on tiny generated train.csv files."""
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold

from kit.cli import main
from kit.errors import KitError
from kit.data.folds import assign_folds, assign_holdout, holdout_pattern, make_folds, select_classes


def train_csv(path, landmark_ids, ids=None):
    ids = ids or [f"{i:016x}" for i in range(len(landmark_ids))]
    pd.DataFrame({"id": ids, "url": "http://x/y.jpg", "landmark_id": landmark_ids}).to_csv(path, index=False)
    return path


def test_select_classes_top_k_ties_and_min_images():
    lid = np.array([7] * 5 + [10] * 2 + [4] * 2 + [1])
    assert select_classes(lid, top=2).tolist() == [4, 7]        # 10 and 4 tie on 2 images: lower id wins
    assert select_classes(lid, top=99).tolist() == [1, 4, 7, 10]
    assert select_classes(lid, min_images=2).tolist() == [4, 7, 10]
    with pytest.raises(KitError, match="--top must be > 0"):
        select_classes(lid, top=0)
    with pytest.raises(KitError, match="exactly one"):
        select_classes(lid)


@pytest.mark.filterwarnings("ignore:The least populated class")  # sklearn, on the classes smaller than F
def test_folds_are_balanced_per_class_and_overall():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(30), rng.integers(1, 40, 30))  # includes classes smaller than F
    fold = assign_folds(labels, 5, seed=1)
    per = pd.crosstab(labels, fold).reindex(columns=range(5), fill_value=0).to_numpy()
    assert (per.max(axis=1) - per.min(axis=1)).max() <= 1       # each class as even as possible
    sizes = np.bincount(fold, minlength=5)                        # folds near equal (random class offsets)
    assert np.ptp(sizes) <= 0.05 * len(labels)
    # same per-class fold sizes as sklearn's StratifiedKFold allocation
    skf = np.zeros(len(labels), int)
    for k, (_, test) in enumerate(StratifiedKFold(5).split(labels, labels)):
        skf[test] = k
    ref = pd.crosstab(labels, skf).reindex(columns=range(5), fill_value=0).to_numpy()
    assert np.array_equal(np.sort(per, axis=1), np.sort(ref, axis=1))
    assert np.array_equal(assign_folds(labels, 5, seed=1), fold)           # deterministic
    assert not np.array_equal(assign_folds(labels, 5, seed=2), fold)       # the seed matters


def test_holdout_is_90_6_4_per_class_and_overall():
    assert sorted(np.unique(holdout_pattern(), return_counts=True)[1].tolist()) == [2, 3, 45]
    labels = np.repeat([0, 1], [100, 50])
    split = assign_holdout(labels, seed=3)
    for c, n in ((0, 100), (1, 50)):
        got = np.bincount(split[labels == c] + 1, minlength=3)  # holdout, val, train
        assert got.tolist() == [n * 4 // 100, n * 6 // 100, n * 90 // 100]
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(200), rng.integers(1, 10, 200))[:1000]  # small classes only
    assert len(labels) == 1000
    got = np.bincount(assign_holdout(labels) + 1)  # small classes: 90/6/4 only on average
    assert abs(got[2] - 900) <= 15 and abs(got[1] - 60) <= 12 and abs(got[0] - 40) <= 12


def test_folds_nest_across_class_subsets():
    """An image's fold does not depend on which other classes are kept (top-2k fold 0 within top-18k's)."""
    rng = np.random.default_rng(5)
    lid = np.repeat(rng.choice(10_000, 40, replace=False), rng.integers(3, 60, 40))
    train = pd.DataFrame({"id": [f"{i:016x}" for i in rng.permutation(len(lid))], "landmark_id": lid})
    wide = make_folds(train, min_images=10, n_folds=5, seed=7)
    narrow = make_folds(train, top=8, n_folds=5, seed=7)
    both = narrow.merge(wide, on="id", suffixes=("_n", "_w"))
    assert len(both) == len(narrow) > 0
    assert (both["fold_n"] == both["fold_w"]).all()
    assert set(narrow.id[narrow.fold == 0]) <= set(wide.id[wide.fold == 0])


def test_make_folds_labels_and_columns():
    train = pd.DataFrame({"id": list("abcdefgh"), "landmark_id": [30, 5, 30, 9, 5, 30, 5, 2]})
    out = make_folds(train, top=2, n_folds=2)
    assert out.columns.tolist() == ["id", "landmark_id", "label", "fold"]
    assert out["id"].tolist() == ["a", "b", "c", "e", "f", "g"]   # input order, classes 5 and 30 kept
    assert out["label"].tolist() == [1, 0, 1, 0, 1, 0]              # ascending landmark_id -> 0, 1


def test_make_folds_shares_no_writable_memory_with_its_input():
    """Every class kept: the result reuses the input's columns (copy=False, copy-on-write); editing either frame
    in place must neither fail nor show in the other."""
    train = pd.DataFrame({"id": list("abcd"), "landmark_id": np.array([3, 5, 3, 5], np.int64)})
    out = make_folds(train, min_images=1, n_folds=2)
    out.loc[0, "landmark_id"] = 99
    out.loc[1, "label"] = 7
    train.loc[2, "landmark_id"] = 42
    assert train["landmark_id"].tolist() == [3, 5, 42, 5] and out["landmark_id"].tolist() == [99, 5, 3, 5]
    assert out["label"].tolist() == [0, 7, 0, 1]


@pytest.mark.parametrize("holdout", [False, True])
def test_fold_summary_counts_equal_value_counts(holdout):
    from kit.data.folds import fold_summary

    rng = np.random.default_rng(5)
    train = pd.DataFrame({"id": [f"{i:016x}" for i in range(3000)], "landmark_id": rng.zipf(1.5, 3000) % 97})
    out = make_folds(train, min_images=2, n_folds=7, holdout=holdout)
    counts = out["fold"].value_counts().sort_index()
    lines = fold_summary(out, len(train)).splitlines()
    assert lines[0] == f"classes kept: {out['label'].nunique()}  images: {len(out)} of 3000"
    assert lines[2] == "rows per fold: " + ", ".join(f"{k}: {v}" for k, v in counts.items())
    assert fold_summary(out.assign(fold=out["fold"].astype(np.int64)), 3000) == fold_summary(out, 3000)


def test_kit_folds_cli_and_clean_csv(tmp_path, capsys):
    lid = [3] * 6 + [8] * 4 + [1] * 2
    ids = [f"{i:016d}" for i in range(12)]                         # all-digit ids keep their zeros
    path = train_csv(tmp_path / "train.csv", lid, ids)
    out = tmp_path / "folds" / "top2.csv"
    assert main(["folds", "--labels", str(path), "--top", "2", "--n-folds", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "classes kept: 2  images: 10 of 12" in text and "rows per fold: 0: 5, 1: 5" in text
    df = pd.read_csv(out, dtype={"id": str})
    assert df.columns.tolist() == ["id", "landmark_id", "label", "fold"]
    assert df["id"].tolist() == ids[:10] and df["label"].tolist() == [0] * 6 + [1] * 4
    clean = tmp_path / "clean.csv"
    clean.write_text(f"landmark_id,images\n3,{ids[0]} {ids[1]} {ids[2]}\n1,{ids[10]}\n")
    assert main(["folds", "--labels", str(path), "--min-images", "1", "--n-folds", "2", "--out", str(out),
                 "--clean-csv", str(clean)]) == 0
    df = pd.read_csv(out, dtype={"id": str})
    assert df["id"].tolist() == ids[:3] + [ids[10]] and df["label"].tolist() == [1, 1, 1, 0]


@pytest.mark.parametrize("text, message", [
    ("id,url\na,u\n", r"missing column\(s\) landmark_id"),
    ("id,url,landmark_id\na,u,1\nb,u,2\nc,u,x7\n", r"row 3 \(line 4\): landmark_id 'x7' is not a non-negative integer"),
    ("id,url,landmark_id\na,u,1\nb,u,\n", r"row 2 \(line 3\): landmark_id \(empty\) is not"),
    ("id,url,landmark_id\na,u,1.5\n", r"row 1 \(line 2\): landmark_id 1.5 is not"),
])
def test_kit_folds_bad_input_one_line_error(tmp_path, capsys, text, message):
    path = tmp_path / "train.csv"
    path.write_text(text)
    assert main(["folds", "--labels", str(path), "--top", "2", "--out", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert re.search(message, err), err
    assert not (tmp_path / "f.csv").exists()


def test_clean_csv_label_mismatch_and_holdout_cli(tmp_path, capsys):
    path = train_csv(tmp_path / "train.csv", [3] * 50 + [8] * 50)
    clean = tmp_path / "clean.csv"
    clean.write_text(f"landmark_id,images\n8,{0:016x}\n")
    out = tmp_path / "h.csv"
    args = ["folds", "--labels", str(path), "--top", "2", "--out", str(out)]
    assert main(args + ["--clean-csv", str(clean)]) == 2
    assert f"clean.csv: image {0:016x} is listed under landmark 8, train.csv says 3" in capsys.readouterr().err
    assert main(args + ["--holdout"]) == 0
    df = pd.read_csv(out)
    assert pd.crosstab(df["landmark_id"], df["fold"]).to_numpy().tolist() == [[2, 3, 45], [2, 3, 45]]


def cycle_positions_ref(labels, seed, cycle, ids, landmark_ids):
    """The module docstring's rule, per class: rank by (id hash, row), plus the class's seeded offset."""
    from kit.data.folds import seeded_hash

    h = seeded_hash(ids, seed)
    out = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rows = rows[np.lexsort((rows, h[rows]))]
        offset = int(seeded_hash(np.asarray(landmark_ids)[rows[:1]], seed + 1)[0] % np.uint64(cycle))
        out[rows] = (np.arange(len(rows)) + offset) % cycle
    return out


@pytest.mark.parametrize("seed", range(6))
def test_fold_positions_equal_the_per_class_rule(seed):
    from kit.data.folds import assign_folds, assign_holdout, holdout_pattern

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4000))
    labels = np.unique(rng.integers(0, int(rng.integers(1, 80)), n), return_inverse=True)[1]
    ids = np.array([f"{x:016x}" for x in rng.integers(0, 2**62, n)], dtype=object)
    lid = labels * 7 + 3
    n_folds = int(rng.integers(2, 9))
    got = assign_folds(labels, n_folds, seed, ids=ids, landmark_ids=lid)
    np.testing.assert_array_equal(got, cycle_positions_ref(labels, seed, n_folds, ids, lid))
    assert got.dtype == np.int8
    np.testing.assert_array_equal(assign_holdout(labels, seed, ids=ids, landmark_ids=lid),
                                  holdout_pattern()[cycle_positions_ref(labels, seed, 50, ids, lid)])


@pytest.mark.parametrize("case", ["plain", "padded ids", "padded ids, clean csv", "bad id", "duplicate id",
                                  "padded ids, no class kept unless stripped"])
def test_folds_from_csv_equals_make_folds_of_read_train(tmp_path, case):
    """kit folds = make_folds of read_train (restricted to the clean CSV): same frame, same first error."""
    from kit.data.folds import folds_from_csv, make_folds
    from kit.data.train_csv import read_clean, read_train, restrict_to_clean
    from kit.errors import KitError

    ids = [f"{i:016x}" for i in range(40)]
    if "padded" in case:
        ids = [f" {i} " if k % 3 == 0 else i for k, i in enumerate(ids)]
    if case == "bad id":
        ids[7] = "../etc"
    if case == "duplicate id":
        ids[9] = ids[2]
    path = train_csv(tmp_path / "train.csv", [3] * 20 + [8] * 12 + [1] * 8, ids)
    clean = None
    if "clean" in case or "no class" in case:
        clean = tmp_path / "clean.csv"
        listed = " ".join(i.strip() for i in ids[:20])
        clean.write_text(f"landmark_id,images\n3,{listed}\n")
    kw = dict(min_images=15) if "no class" in case else dict(top=2)  # raw ids keep 13 of class 3: < 15

    def reference():
        t = read_train(path)
        t = restrict_to_clean(t, read_clean(clean), clean) if clean else t
        return make_folds(t, n_folds=3, **kw)

    try:
        want = reference()
    except KitError as e:
        with pytest.raises(KitError) as got:
            folds_from_csv(path, clean, n_folds=3, **kw)
        assert str(got.value) == str(e)
        return
    got, n_rows = folds_from_csv(path, clean, n_folds=3, **kw)
    pd.testing.assert_frame_equal(got, want)
    assert n_rows == 40


def test_clean_csv_read_beside_train_keeps_the_error_order(tmp_path):
    """A bad train.csv is the error reported first, then a bad clean CSV."""
    from kit.data.folds import folds_from_csv

    (tmp_path / "clean.csv").write_text("landmark_id\n3\n")  # no images column
    train_csv(tmp_path / "bad.csv", ["x7", 3])
    with pytest.raises(KitError, match="bad.csv: row 1 .*landmark_id 'x7'"):
        folds_from_csv(tmp_path / "bad.csv", tmp_path / "clean.csv", min_images=1)
    train_csv(tmp_path / "train.csv", [3, 3])
    with pytest.raises(KitError, match="clean.csv"):
        folds_from_csv(tmp_path / "train.csv", tmp_path / "clean.csv", min_images=1)


def test_seeded_fold_assignment_is_pinned():
    """The folds of a given train.csv and seed never change silently (models validated on fold 0 of an
    older folds file must still see the same images): pandas' hash of (id, seed), pinned here."""
    from kit.data.folds import make_folds, seeded_hash

    train = pd.DataFrame({"id": [f"{i:016x}" for i in range(0, 12 * 7919, 7919)], "landmark_id": [5] * 7 + [2] * 5})
    assert make_folds(train, min_images=1, n_folds=3)["fold"].tolist() == [0, 0, 2, 2, 1, 1, 2, 1, 1, 0, 2, 2]
    assert make_folds(train, min_images=1, n_folds=3, seed=1)["fold"].tolist() == [0, 2, 1, 0, 1, 0, 2, 0, 1, 1, 2, 0]
    assert make_folds(train, min_images=1, holdout=True)["fold"].tolist() == [1, -1] + [1] * 10
    assert seeded_hash(["0123456789abcdef"], 0).tolist() == [5295032900694423351]
    assert seeded_hash(np.array([7]), 1).tolist() == [9236991274687748858]
