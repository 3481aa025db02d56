"""The vectorised ensemble / retrieval / filter paths against naive per-row copies of the code
they replaced, on random cases with score ties, repeated labels and -1 (empty) slots: results must be
bit-identical, not just close."""
import itertools

import numpy as np
import pytest

from kit.errors import KitError

import kit.ensemble.rules as E
import kit.ensemble.soft as ES
import kit.inference.retrieval as R
import kit.inference.search as S
import kit.truth as T
from kit.predictions import Predictions


# --------------------------------------------------------------- naive references (the old code)
def align_ref(preds):
    ids = list(dict.fromkeys(itertools.chain.from_iterable(p.ids.tolist() for p in preds)))
    return [p.reindex(ids) for p in preds]


def soft_average_ref(preds, weights=None, topk=None):
    preds = align_ref(preds)
    w = ES.check_weights(weights, len(preds))
    topk = topk or max(p.labels.shape[1] for p in preds)
    labels = np.concatenate([p.labels for p in preds], axis=1)
    contrib = np.concatenate([wj * np.where(p.labels >= 0, p.scores, 0.0) for wj, p in zip(w, preds)], axis=1)
    out_l = np.full((len(labels), topk), -1, np.int64)
    out_s = np.zeros((len(labels), topk), np.float32)
    for i in range(len(labels)):
        ok = labels[i] >= 0
        uniq, inv = np.unique(labels[i][ok], return_inverse=True)
        total = np.bincount(inv, weights=contrib[i][ok], minlength=len(uniq)) / w.sum()
        top = np.argsort(-total, kind="stable")[:topk]
        out_l[i, : len(top)], out_s[i, : len(top)] = uniq[top], total[top]
    return Predictions(preds[0].ids, out_l, out_s)


def knn_vote_ref(sims, neighbour_labels, topk, power=1.0):
    q = len(sims)
    votes = np.where(neighbour_labels >= 0, np.clip(sims, 0, None) ** power, 0.0)
    labels = np.full((q, topk), -1, np.int64)
    scores = np.zeros((q, topk), np.float32)
    for i in range(q):
        ok = neighbour_labels[i] >= 0
        uniq, inv = np.unique(neighbour_labels[i][ok], return_inverse=True)
        total = np.bincount(inv, weights=votes[i][ok], minlength=len(uniq))
        order = np.lexsort((uniq, -total))[:topk]
        labels[i, : len(order)], scores[i, : len(order)] = uniq[order], total[order]
    return labels, scores


def centroid_rows_ref(sims, idx, owner, topk):
    q = len(sims)
    labels = np.full((q, topk), -1, np.int64)
    scores = np.zeros((q, topk), np.float32)
    for i in range(q):
        ok = idx[i] >= 0
        owners = owner[idx[i][ok]]
        _, first = np.unique(owners, return_index=True)
        first = np.sort(first)[:topk]
        labels[i, : len(first)], scores[i, : len(first)] = owners[first], sims[i][ok][first]
    return labels, scores


# ------------------------------------------------------------------------------- random inputs
def random_preds(rng, n_ids, k, n_labels, id_pool, empty=0.2, tie_scores=True):
    ids = rng.choice(id_pool, n_ids, replace=False)
    labels = rng.integers(0, n_labels, (n_ids, k))
    labels[rng.random((n_ids, k)) < empty] = -1
    if tie_scores:  # few distinct values: many exact ties within and across rows
        scores = rng.choice(np.array([0.1, 0.25, 0.5, 0.75, 1.0], np.float32), (n_ids, k))
    else:
        scores = rng.random((n_ids, k)).astype(np.float32)
    return Predictions(ids, labels, np.where(labels >= 0, scores, 0.0))


def same(a: Predictions, b: Predictions):
    assert a.ids.tolist() == b.ids.tolist()
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.scores, b.scores)  # bit-identical


@pytest.mark.parametrize("seed", range(6))
def test_soft_average_equals_per_row_loop(seed):
    rng = np.random.default_rng(seed)
    pool = np.array([f"{i:016x}" for i in range(400)])
    m = int(rng.integers(1, 5))
    preds = [random_preds(rng, int(rng.integers(1, 300)), int(rng.integers(1, 6)), int(rng.integers(1, 12)), pool,
                          empty=float(rng.random() * 0.6), tie_scores=bool(seed % 2 == 0)) for _ in range(m)]
    for weights in (None, rng.random(m) + 0.01, np.eye(m)[0] if m > 1 else None):
        for topk in (None, 1, 3, 9):
            same(E.soft_average(preds, weights, topk), soft_average_ref(preds, weights, topk))


def test_soft_average_all_empty_rows_and_duplicate_labels_in_a_row():
    p0 = Predictions(["a", "b", "c"], [[-1, -1], [3, 3], [2, -1]], [[0, 0], [0.5, 0.5], [0.4, 0]])
    p1 = Predictions(["c", "d"], [[-1, -1], [-1, -1]], [[0, 0], [0, 0]])
    out = E.soft_average([p0, p1], [0.3, 0.7])
    same(out, soft_average_ref([p0, p1], [0.3, 0.7]))
    assert out.labels.tolist() == [[-1, -1], [3, -1], [2, -1], [-1, -1]]
    assert out.scores[1, 0] == np.float32((0.3 * np.float32(0.5) + 0.3 * np.float32(0.5)) / 1.0)


def test_align_keeps_first_seen_order_like_the_dict_version():
    rng = np.random.default_rng(3)
    pool = np.array([f"id{i}" for i in range(50)])
    preds = [random_preds(rng, int(rng.integers(1, 40)), 2, 5, pool) for _ in range(3)]
    for a, b in zip(E.align(preds), align_ref(preds)):
        same(a, b)


def test_fit_soft_weights_unchanged_by_the_plan():
    import pandas as pd

    rng = np.random.default_rng(0)
    pool = np.array([f"{i:016x}" for i in range(300)])
    preds = [random_preds(rng, 200, 5, 8, pool, empty=0.1, tie_scores=False) for _ in range(3)]
    ids = E.align(preds)[0].ids
    truth = pd.DataFrame({"id": ids.astype(object), "landmark_id": rng.integers(-1, 8, len(ids))})
    truth = truth.assign(landmarks=[[int(x)] if x >= 0 else [] for x in truth["landmark_id"]])[["id", "landmarks"]]
    truth = T.Truth(truth, "labels")
    got = E.fit_soft_weights(preds, truth, step=0.25)

    def score(w):  # the old search: soft_average + score_gap per grid point
        return E.score_gap(soft_average_ref(preds, w), truth)

    grid = [np.array(c, float) / 4 for c in ES._compositions(4, 3)]
    gaps = [score(w) for w in grid]
    np.testing.assert_array_equal(got, grid[int(np.argmax(gaps))])
    assert len(set(np.round(gaps, 12))) > 1  # the grid is not flat: the choice means something


@pytest.mark.parametrize("seed", range(6))
def test_knn_vote_equals_per_row_loop(seed):
    rng = np.random.default_rng(seed)
    q, k = int(rng.integers(1, 200)), int(rng.integers(1, 12))
    nl = rng.integers(0, int(rng.integers(1, 6)), (q, k))
    nl[rng.random((q, k)) < 0.2] = -1
    sims = rng.choice(np.array([-0.2, 0.0, 0.3, 0.5, 0.9], np.float32), (q, k)) if seed % 2 else \
        (rng.random((q, k)) * 2 - 1).astype(np.float32)
    for topk, power in ((1, 1.0), (3, 2.0), (20, 0.5)):
        got, ref = R.knn_vote(sims, nl, topk, power), knn_vote_ref(sims, nl, topk, power)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("seed", range(4))
def test_centroid_first_per_owner_equals_per_row_loop(seed):
    rng = np.random.default_rng(seed)
    q, k = int(rng.integers(1, 150)), int(rng.integers(1, 15))
    owner = rng.integers(0, 7, 40)
    owner[rng.random(40) < 0.1] = -1  # a class id of -1 is still a class (only idx -1 is "none")
    idx = rng.integers(0, 40, (q, k))
    idx[:, k // 2:][rng.random((q, k - k // 2)) < 0.3] = -1
    sims = -np.sort(-rng.choice(np.array([0.1, 0.4, 0.4, 0.8], np.float32), (q, k)), axis=1)
    for topk in (1, 3, 10):
        got = R.first_per_owner(sims, owner[np.maximum(idx, 0)], idx >= 0, topk)
        ref = centroid_rows_ref(sims, idx, owner, topk)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_search_index_chunked_add_equals_one_add():
    rng = np.random.default_rng(0)
    xb, xq = rng.normal(size=(1000, 16)).astype(np.float32), rng.normal(size=(50, 16)).astype(np.float32)
    a = R.SearchIndex(xb, add_batch=1000).search(xq, 5)
    b = R.SearchIndex(xb, add_batch=77).search(xq, 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    ivf = [R.SearchIndex(xb, ivf_threshold=100, nlist=8, add_batch=n, backend="faiss").search(xq, 5) for n in (1000, 123)]
    np.testing.assert_array_equal(ivf[0][1], ivf[1][1])
    np.testing.assert_array_equal(ivf[0][0], ivf[1][0])


# ------------------------------------------------------------------- filter candidate selection
def candidates_ref(pred, idx, rows, n, emb):
    from kit.localfeatures.matching import ClassRows

    out = {}
    for i in rows:  # the index grouped again for every row
        near = idx.ids[ClassRows(idx.landmarks).nearest(pred.labels[i, 0], None if emb is None else emb[i],
                                                         idx.embeddings, n + 1)]
        out[i] = [j for j in near if j != pred.ids[i]][:n]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_select_candidates_equals_per_row_class_neighbours(seed):
    from kit.filters.base import TrainIndex
    from kit.filters.local import select_candidates

    rng = np.random.default_rng(seed)
    n_train, q = 300, 80
    lm = rng.integers(0, 12, n_train)
    emb = rng.choice(np.array([-0.5, 0.0, 0.5, 1.0], np.float32), (n_train, 4))  # many tied similarities
    train_ids = np.array([f"t{i}" for i in range(n_train)])
    qids = np.array([f"t{i}" if i % 5 == 0 else f"q{i}" for i in range(q)])  # some queries are in the index
    labels = rng.integers(-1, 14, (q, 2))  # -1 rows, and classes 12, 13 absent from the index
    pred = Predictions(qids, labels, np.ones((q, 2)), rng.choice(np.array([0.0, 1.0], np.float32), (q, 4)))
    rows = np.flatnonzero(labels[:, 0] >= 0)
    for index_emb in (emb, None):
        idx = TrainIndex(train_ids, lm, index_emb)
        for n in (0, 1, 3):
            for qemb in (pred.embeddings, None):
                assert select_candidates(pred, idx, rows, n, qemb) == candidates_ref(pred, idx, rows, n, qemb)


def test_train_index_load_matches_dict_lookup(tmp_path):
    from kit.filters.base import TrainIndex
    from kit.predictions import save_predictions

    (tmp_path / "labels.csv").write_text("id,landmark_id\na,1\nb,2\na,3\nc,4\n")
    save_predictions(Predictions(["c", "x", "a"], [[0], [0], [0]], [[1], [1], [1]], np.eye(3, dtype=np.float32)),
                     tmp_path / "train.npz")
    with pytest.raises(KitError, match=r"labels.csv: row 3 \(line 4\): duplicate id a"):  # no silent pick
        TrainIndex.load(str(tmp_path / "train.npz"), str(tmp_path / "labels.csv"))
    (tmp_path / "labels.csv").write_text("id,landmark_id\na,3\nb,2\nc,4\n")
    idx = TrainIndex.load(str(tmp_path / "train.npz"), str(tmp_path / "labels.csv"))
    assert idx.ids.tolist() == ["c", "a"] and idx.landmarks.tolist() == [4, 3]
    np.testing.assert_array_equal(idx.embeddings, np.eye(3, dtype=np.float32)[[0, 2]])


@pytest.mark.parametrize("seed", range(4))
def test_soft_plan_top1_path_equals_the_full_ranking(seed):
    rng = np.random.default_rng(seed)
    pool = np.array([f"{i:016x}" for i in range(300)])
    preds = [random_preds(rng, 250, 5, 6, pool, empty=0.3, tie_scores=True) for _ in range(3)]
    preds[0].scores[:5] = np.nan  # NaN totals rank last in the sort; the fast path must agree
    plan = ES.SoftPlan(preds)
    for w in (None, [0.2, 0.5, 0.3], [1.0, 0.0, 0.0]):
        full, top1 = plan(w, topk=5), plan(w, topk=1)
        np.testing.assert_array_equal(top1.labels[:, 0], full.labels[:, 0])
        np.testing.assert_array_equal(top1.scores[:, 0], full.scores[:, 0])
        ref = soft_average_ref(preds, w, 5)
        np.testing.assert_array_equal(full.labels, ref.labels)
        np.testing.assert_array_equal(full.scores, ref.scores)


# ------------------------------------------------------------------------------------- folds
def read_train_ref(path):
    import pandas as pd

    from kit.data.train_csv import _check_landmark_ids

    df = pd.read_csv(path, usecols=["id", "landmark_id"], dtype={"id": str})
    df["id"] = df["id"].str.strip().astype(object)  # ids are stripped
    df["landmark_id"] = _check_landmark_ids(path, df["landmark_id"])
    return df


def restrict_ref(train, clean, path="clean csv"):
    from kit.errors import KitError

    kept = train[train["id"].isin(clean["id"])]
    both = kept.merge(clean.drop_duplicates("id"), on="id", suffixes=("", "_clean"))
    bad = both["landmark_id"].to_numpy() != both["landmark_id_clean"].to_numpy()
    if bad.any():
        r = both[bad].iloc[0]
        raise KitError(f"{path}: image {r['id']} is listed under landmark {r['landmark_id_clean']}, "
                       f"train.csv says {r['landmark_id']}")
    return kept.reset_index(drop=True)


@pytest.mark.parametrize("body", [
    "0001,u,1\n00a1,u,2\n 12 ,u,3\n1e5,u,5\n",                 # ids a number parser would mangle
    "0001,u,1.0\nab,u,2\n",                                     # float landmark ids
    "1,u,1\n2,u,2\n",                                           # all-digit ids stay strings
])
def test_read_train_fast_parser_gives_the_c_parser_frame(tmp_path, body):
    import pandas as pd

    from kit.data.train_csv import read_train

    path = tmp_path / "train.csv"
    path.write_text("id,url,landmark_id\n" + body)
    got, ref = read_train(path), read_train_ref(path)
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)  # ids: object or str dtype, same values
    assert got["id"].tolist() == ref["id"].tolist() and got["id"].tolist()[0] in ("0001", "1")


def test_read_train_keeps_ids_the_default_na_parsing_would_drop(tmp_path):
    from kit.data.train_csv import read_train

    path = tmp_path / "train.csv"
    path.write_text("id,url,landmark_id\nNA,u,1\nnull,u,2\nnan,,3\nab,u,4\n")  # url blank: not read
    got = read_train(path)
    assert got["id"].tolist() == ["NA", "null", "nan", "ab"] and got["landmark_id"].tolist() == [1, 2, 3, 4]


def test_read_train_large_file_with_digit_ids_first_equals_the_exact_parser(tmp_path):
    """pandas reads big files in chunks: ids that look like numbers in the first chunks (leading zeros)
    must come back as written, the same frame as the exact str parser."""
    import pandas as pd

    from kit.data.train_csv import read_train

    n = 200_000
    ids = [f"{i:016d}" for i in range(n // 2)] + [f"{i:015x}z" for i in range(n // 2, n)]
    path = tmp_path / "train.csv"
    path.write_text("id,url,landmark_id\n" + "".join(f"{a},u,{k % 97}\n" for k, a in enumerate(ids)))
    got = read_train(path)
    ref = pd.read_csv(path, usecols=["id", "landmark_id"], dtype={"id": str}, keep_default_na=False)
    assert got["id"].tolist() == ref["id"].tolist() == ids
    np.testing.assert_array_equal(got["landmark_id"].to_numpy(), ref["landmark_id"].to_numpy())


@pytest.mark.parametrize("seed", range(4))
def test_restrict_to_clean_equals_the_merge(seed):
    import pandas as pd

    from kit.data.train_csv import restrict_to_clean
    from kit.errors import KitError

    rng = np.random.default_rng(seed)
    ids = np.array([f"i{j}" for j in rng.permutation(200)])
    train = pd.DataFrame({"id": ids, "landmark_id": rng.integers(0, 9, 200)})
    pick = rng.choice(260, 120)  # some ids absent from train, some listed twice
    cid = np.array([f"i{j}" for j in pick])
    lut = dict(zip(train["id"], train["landmark_id"]))
    clean = pd.DataFrame({"id": cid, "landmark_id": [lut.get(i, 0) for i in cid]})
    pd.testing.assert_frame_equal(restrict_to_clean(train, clean), restrict_ref(train, clean))
    wrong = clean.copy()
    hit = np.flatnonzero(np.isin(cid, ids))
    wrong.loc[hit[-3:], "landmark_id"] += 1  # conflicting listings: the same first one must be named
    with pytest.raises(KitError) as a:
        restrict_to_clean(train, wrong)
    with pytest.raises(KitError) as b:
        restrict_ref(train, wrong)
    assert str(a.value) == str(b.value)


@pytest.mark.parametrize("seed", range(4))
def test_read_clean_arrow_split_equals_python_split(tmp_path, seed):
    """Arrow's whitespace split of the images column = str.split() + explode, also around blanks, tabs,
    empty cells, and the bytes where the two disagree (non-ASCII, \\x1c-\\x1f: the Python split is used)."""
    import pandas as pd

    from kit.data.train_csv import read_clean

    rng = np.random.default_rng(seed)
    pieces = ["abc", "0f3", "x.y", "a_b", " ", "  ", "\t", ""] + {1: ["\x1c"], 3: ["\u00e9"]}.get(seed, [])
    rows = [(int(rng.integers(0, 9)), "".join(rng.choice(pieces, int(rng.integers(0, 8))))) for _ in range(300)]
    path = tmp_path / "clean.csv"
    pd.DataFrame(rows, columns=["landmark_id", "images"]).to_csv(path, index=False)
    raw = pd.read_csv(path, dtype={"images": str}, keep_default_na=False)
    ref = raw.assign(id=raw["images"].str.split()).explode("id").dropna(subset=["id"])
    got = read_clean(path)
    assert got.columns.tolist() == ["id", "landmark_id"]
    assert got["id"].astype(object).tolist() == ref["id"].tolist()
    assert got["landmark_id"].tolist() == ref["landmark_id"].tolist()


def test_faiss_gpu_path_is_exact_when_the_vectors_fit(monkeypatch):
    """With a GPU (faked: faiss.get_num_gpus() > 0, index_cpu_to_gpu = identity) the index is Flat
    (exact) above ivf_threshold while it fits in gpu_flat_gb, IVF beyond; on CPU IVF as before."""
    import types

    import faiss

    calls = []
    fake = types.SimpleNamespace(**{k: getattr(faiss, k) for k in ("IndexFlatIP", "IndexIVFFlat", "METRIC_INNER_PRODUCT")},
                                 get_num_gpus=lambda: 1, StandardGpuResources=lambda: "res",
                                 index_cpu_to_gpu=lambda res, dev, index: calls.append(dev) or index)
    monkeypatch.setattr(S, "_faiss", lambda: fake)
    rng = np.random.default_rng(0)
    xb, xq = rng.normal(size=(400, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    exact = R.SearchIndex(xb, ivf_threshold=100, backend="faiss")
    assert exact.kind == "flat-gpu" and calls == [0]
    assert R.SearchIndex(xb, ivf_threshold=100, nlist=4, gpu_flat_gb=1e-9, backend="faiss").kind == "ivf4-gpu"
    assert R.SearchIndex(xb, ivf_threshold=100, nlist=4, gpu=False, backend="faiss").kind == "ivf4"
    sims, idx = exact.search(xq, 3)
    ref = np.argsort(-(R.l2n(xq) @ R.l2n(xb).T), axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(idx, ref)


def test_seeded_hash_of_arrow_ids_equals_the_object_path():
    """However the ids were read (Arrow strings in one or several chunks, a slice, Python strings), the same
    ids get the same hashes, so the folds do not depend on the reader."""
    import pandas as pd
    import pyarrow as pa

    from kit.data.folds import seeded_hash as _seeded_hash

    rng = np.random.default_rng(0)
    hexes = np.frombuffer(rng.bytes(8 * 500).hex().encode(), dtype="S16").astype(str)
    cases = [pd.Series(hexes, dtype="str"),
             pd.Series(hexes, dtype="str").iloc[37:400].reset_index(drop=True),  # a slice (buffer offset)
             pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array([hexes[:100], hexes[100:]]))),
             pd.Series(["a", "bb", "ccc"], dtype="str"),
             pd.Series(["é1", "zz"], dtype="str")]
    for s in cases:
        np.testing.assert_array_equal(_seeded_hash(s, 42), _seeded_hash(s.to_numpy(dtype=object), 42))
    assert len(set(_seeded_hash(cases[0], 42).tolist())) == 500


def test_local_filter_loads_features_of_each_chunk_only(monkeypatch):
    """select_candidates runs once for all rows; each chunk must still request only its own rows'
    images and their candidates (as the per-chunk loop did)."""
    import kit.localfeatures.base as LB
    import kit.localfeatures.matching as LM
    from kit.filters.base import TrainIndex
    from kit.filters.local import LocalFilter

    requested = []
    monkeypatch.setattr(LB, "cached_features", lambda ex, ids, paths, cache, progress=True, **kw:
                        requested.append(list(ids)) or {i: i for i in ids})
    monkeypatch.setattr(LM, "count_inliers", lambda a, b, **kw: float(len(b)))
    idx = TrainIndex(np.array([f"trn{i}" for i in range(12)]), np.repeat([1, 2, 3], 4), None)
    pred = Predictions([f"qry{i}" for i in range(6)], [[1], [2], [3], [1], [-1], [2]], np.ones((6, 1)))
    f = LocalFilter(chunk=2, neighbours=2, cache_dir=None)
    f.index = idx
    signal = f.signal(pred)
    assert [sorted(r) for r in requested] == [["qry0", "qry1", "trn0", "trn1", "trn4", "trn5"],
                                              ["qry2", "qry3", "trn0", "trn1", "trn8", "trn9"],
                                              ["qry5", "trn4", "trn5"]]
    assert signal.tolist() == [4.0, 4.0, 4.0, 4.0, 0.0, 4.0]
