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
    assert main(["folds", "--train-csv", str(path), "--top", "2", "--n-folds", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "classes kept: 2  images: 10 of 12" in text and "rows per fold: 0: 5, 1: 5" in text
    df = pd.read_csv(out, dtype={"id": str})
    assert df.columns.tolist() == ["id", "landmark_id", "label", "fold"]
    assert df["id"].tolist() == ids[:10] and df["label"].tolist() == [0] * 6 + [1] * 4
    clean = tmp_path / "clean.csv"
    clean.write_text(f"landmark_id,images\n3,{ids[0]} {ids[1]} {ids[2]}\n1,{ids[10]}\n")
    assert main(["folds", "--train-csv", str(path), "--min-images", "1", "--n-folds", "2", "--out", str(out),
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
    assert main(["folds", "--train-csv", str(path), "--top", "2", "--out", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert re.search(message, err), err
    assert not (tmp_path / "f.csv").exists()


def test_clean_csv_label_mismatch_and_holdout_cli(tmp_path, capsys):
    path = train_csv(tmp_path / "train.csv", [3] * 50 + [8] * 50)
    clean = tmp_path / "clean.csv"
    clean.write_text(f"landmark_id,images\n8,{0:016x}\n")
    out = tmp_path / "h.csv"
    args = ["folds", "--train-csv", str(path), "--top", "2", "--out", str(out)]
    assert main(args + ["--clean-csv", str(clean)]) == 2
    assert f"clean.csv: image {0:016x} is listed under landmark 8, train.csv says 3" in capsys.readouterr().err
    assert main(args + ["--holdout"]) == 0
    df = pd.read_csv(out)
    assert pd.crosstab(df["landmark_id"], df["fold"]).to_numpy().tolist() == [[2, 3, 45], [2, 3, 45]]


def cycle_positions_ref(labels, seed, cycle, ids, landmark_ids):
    """The module docstring's rule, per class: rank by (id hash, row), plus the class's seeded offset."""
    from kit.data.folds import _seeded_hash

    h = _seeded_hash(ids, seed)
    off = (_seeded_hash(np.asarray(landmark_ids), seed + 1) % np.uint64(1 << 31)).astype(np.int64)
    out = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rows = rows[np.lexsort((rows, h[rows]))]
        out[rows] = (np.arange(len(rows)) + off[rows]) % cycle  # off: per row (a class may hold several ids)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_fold_positions_equal_the_per_class_rule(seed):
    from kit.data.folds import assign_folds, assign_holdout, holdout_pattern

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4000))
    labels = np.unique(rng.integers(0, int(rng.integers(1, 80)), n), return_inverse=True)[1]
    ids = np.array([f"{x:016x}" for x in rng.integers(0, 2**62, n)], dtype=object)
    lid = labels * 7 + 3 if seed % 2 else rng.integers(0, 5, n)  # odd seeds: several landmark ids in a class
    n_folds = int(rng.integers(2, 9))
    got = assign_folds(labels, n_folds, seed, ids=ids, landmark_ids=lid)
    np.testing.assert_array_equal(got, cycle_positions_ref(labels, seed, n_folds, ids, lid))
    assert got.dtype == np.int8
    np.testing.assert_array_equal(assign_holdout(labels, seed, ids=ids, landmark_ids=lid),
                                  holdout_pattern()[cycle_positions_ref(labels, seed, 50, ids, lid)])


@pytest.mark.parametrize("case", ["plain", "padded ids", "padded ids, clean csv", "bad id", "duplicate id",
                                  "padded ids, no class kept unless stripped"])
def test_folds_from_csv_equals_make_folds_of_read_train(tmp_path, case):
    """kit folds checks ids in a second thread while it folds: same frame, same first error as read_train."""
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


def _arrow_ids(strings):
    return pd.Series(pd.array(list(strings), dtype="string[pyarrow]"))


def test_index_in_bytes_equals_index_in_or_declines(monkeypatch):
    """The uint64 lookup of GLDv2-style ids = Arrow's string lookup (absent ids -1); it declines (None) where it
    cannot answer exactly: repeated keys, other widths, several chunks, two ids sharing a hash."""
    import kit.idbytes as B
    from kit.metrics import index_in

    rng = np.random.default_rng(4)
    pool = np.array([f"{x:016x}" for x in rng.integers(0, 2**63, 6000)])
    pool = np.unique(pool)
    keys, values = pool[:2500], np.concatenate([pool[1000:4000], pool[:10]])
    rng.shuffle(values)
    got = B.index_in_bytes(_arrow_ids(values), _arrow_ids(keys))
    want = index_in(values.astype(object), keys.astype(object))
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64 and (got >= 0).sum() == 1510
    assert B.index_in_bytes(_arrow_ids(values), _arrow_ids(np.append(keys, keys[5]))) is None  # first listing
    assert B.index_in_bytes(_arrow_ids([v[:15] for v in values]), _arrow_ids([k[:15] for k in keys])) is None
    assert B.index_in_bytes(_arrow_ids(values), _arrow_ids([k[:8] for k in keys])) is None  # other width
    import pyarrow as pa

    two = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([values[:9].tolist(), values[9:].tolist()])))
    assert B.index_in_bytes(two, _arrow_ids(keys)) is None
    monkeypatch.setattr(B, "word_hash", lambda cols: np.concatenate([c.view(np.uint64)[:, 0] for c in cols]))
    clash = np.array([keys[0][:8] + "zzzzzzzz"])  # shares keys[0]'s first word (its "hash" here), not the id
    assert B.index_in_bytes(_arrow_ids(clash), _arrow_ids(keys)) is None


def test_clean_restriction_fast_path_equals_the_string_lookup(tmp_path, monkeypatch):
    """kit folds --clean-csv on 16-character ids: the uint64 lookup and Arrow's string lookup give the same folds."""
    import kit.metrics as T  # index_in's fast path
    from kit.data.folds import folds_from_csv

    rng = np.random.default_rng(2)
    ids = np.unique([f"{x:016x}" for x in rng.integers(0, 2**63, 3000)])
    rng.shuffle(ids)
    lids = rng.integers(0, 40, len(ids))
    train_csv(tmp_path / "train.csv", lids.tolist(), ids.tolist())
    listed = pd.DataFrame({"id": ids[::3], "landmark_id": lids[::3]}).groupby("landmark_id")["id"].agg(" ".join)
    listed.rename("images").reset_index().to_csv(tmp_path / "clean.csv", index=False)
    calls = []
    real = T.index_in_bytes
    monkeypatch.setattr(T, "index_in_bytes", lambda v, k: calls.append(real(v, k)) or calls[-1])
    fast, n = folds_from_csv(tmp_path / "train.csv", tmp_path / "clean.csv", min_images=1)
    assert calls[0] is not None and len(fast) == 1000 and n == 3000
    monkeypatch.setattr(T, "index_in_bytes", lambda v, k: None)
    slow, _ = folds_from_csv(tmp_path / "train.csv", tmp_path / "clean.csv", min_images=1)
    pd.testing.assert_frame_equal(fast, slow)


def test_clean_csv_read_beside_train_keeps_the_error_order(tmp_path):
    """The clean CSV is read in a second thread: a bad train.csv is still the error reported first."""
    from kit.data.folds import folds_from_csv

    (tmp_path / "clean.csv").write_text("landmark_id\n3\n")  # no images column
    train_csv(tmp_path / "bad.csv", ["x7", 3])
    with pytest.raises(KitError, match="bad.csv: row 1 .*landmark_id 'x7'"):
        folds_from_csv(tmp_path / "bad.csv", tmp_path / "clean.csv", min_images=1)
    train_csv(tmp_path / "train.csv", [3, 3])
    with pytest.raises(KitError, match="clean.csv"):
        folds_from_csv(tmp_path / "train.csv", tmp_path / "clean.csv", min_images=1)
