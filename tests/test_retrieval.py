import numpy as np
import pytest

import kit.inference.retrieval as R
import kit.inference.torch_index as B
import kit.inference.search as S


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(xb, xq, k):
    sims = _unit(xq) @ _unit(xb).T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, 1), idx


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(25, 16)).astype(np.float32)


def test_flat_index_equals_brute_force(data):
    xb, xq = data
    index = R.SearchIndex(xb)
    assert index.kind == "flat"
    sims, idx = index.search(xq, 7)
    ref_s, ref_i = _brute(xb, xq, 7)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)


def test_ivf_index_probing_every_list_equals_brute_force(data):
    xb, xq = data
    index = R.SearchIndex(xb, ivf_threshold=100, nlist=4, nprobe=4, backend="faiss")
    assert index.kind == "ivf4"
    sims, idx = index.search(xq, 5, batch=10)  # several batches
    ref_s, ref_i = _brute(xb, xq, 5)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)


def test_torch_fallback_without_faiss(data, monkeypatch):
    monkeypatch.setattr(S, "_faiss", lambda: None)
    xb, xq = data
    index = R.SearchIndex(xb)
    assert index.kind.startswith("torch")
    sims, idx = index.search(xq, 3)
    ref_s, ref_i = _brute(xb, xq, 3)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)


def test_torch_backend_in_query_chunks(data):
    xb, xq = data
    index = R.SearchIndex(xb, backend="torch")
    assert index.kind.startswith("torch") and len(index) == 300
    sims, idx = index.search(xq, 4, batch=7)  # 25 queries in chunks of 7
    ref_s, ref_i = _brute(xb, xq, 4)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)


def test_knn_vote_hand_made():
    sims = np.array([[0.9, 0.8, 0.5, 0.4], [0.6, -0.3, 0.2, 0.1]], np.float32)
    nl = np.array([[7, 3, 7, -1], [5, 9, 9, 9]])
    labels, scores = R.knn_vote(sims, nl, topk=3)
    # row 0: class 7 = 0.9 + 0.5 = 1.4, class 3 = 0.8, the -1 neighbour does not vote
    np.testing.assert_array_equal(labels[0], [7, 3, -1])
    np.testing.assert_allclose(scores[0], [1.4, 0.8, 0.0], atol=1e-6)
    # row 1: class 5 = 0.6; class 9 = 0 (negative clipped) + 0.2 + 0.1 = 0.3
    np.testing.assert_array_equal(labels[1], [5, 9, -1])
    np.testing.assert_allclose(scores[1], [0.6, 0.3, 0.0], atol=1e-6)
    labels, scores = R.knn_vote(sims, nl, topk=2, power=2.0)
    np.testing.assert_allclose(scores[0], [0.81 + 0.25, 0.64], atol=1e-6)  # 7: 1.06, 3: 0.64
    np.testing.assert_allclose(scores[1], [0.36, 0.05], atol=1e-6)          # 9: 0.04 + 0.01


def _clusters(rng, centers, n, noise):
    return np.concatenate([c + noise * rng.normal(size=(n, len(c))) for c in centers]).astype(np.float32)


def test_knn_predictor_on_clusters():
    rng = np.random.default_rng(1)
    centers = _unit(rng.normal(size=(4, 32)))
    xb = _clusters(rng, centers, 20, 0.05)
    yb = np.repeat([10, 20, 30, 40], 20)
    xq = _clusters(rng, centers, 3, 0.05)
    pred = R.KnnPredictor(k=5).fit(xb, yb).predict([f"q{i}" for i in range(12)], xq, topk=2)
    np.testing.assert_array_equal(pred.labels[:, 0], np.repeat([10, 20, 30, 40], 3))
    assert np.all(pred.scores[:, 0] > 4.5)       # 5 near-identical neighbours of sim ~1
    np.testing.assert_array_equal(pred.labels[:, 1], -1)  # no other class among the 5 neighbours
    np.testing.assert_allclose(np.linalg.norm(pred.embeddings, axis=1), 1, atol=1e-5)


def test_class_centroids_finds_two_views_and_drops_small_clusters():
    rng = np.random.default_rng(2)
    a, b, c = np.eye(8)[0], np.eye(8)[1], np.eye(8)[2]
    x = np.concatenate([_clusters(rng, [a], 12, 0.02), _clusters(rng, [b], 9, 0.02), _clusters(rng, [c], 2, 0.02)])
    cents = R.class_centroids(x, distance_threshold=0.3, min_cluster_size=5)
    assert cents.shape == (2, 8)  # the 2-member cluster is below min_cluster_size
    nearest = np.sort(np.argmax(cents, axis=1))
    np.testing.assert_array_equal(nearest, [0, 1])
    assert np.all(cents.max(axis=1) > 0.99)
    # nothing valid -> only the largest cluster (the 12 around axis 0)
    cents = R.class_centroids(x, distance_threshold=0.3, min_cluster_size=50)
    assert cents.shape == (1, 8) and np.argmax(cents[0]) == 0
    # a loose threshold merges everything (max cosine distance between axes is 1) into one centroid
    cents = R.class_centroids(x, distance_threshold=1.5, min_cluster_size=5)
    assert cents.shape == (1, 8)


def test_centroid_predictor_max_per_class_and_threshold():
    e = np.eye(4, dtype=np.float32)
    # class 1 has two views (axes 0 and 1), class 2 one (axis 2)
    xb = np.concatenate([np.repeat(e[[0]], 3, 0), np.repeat(e[[1]], 3, 0), np.repeat(e[[2]], 3, 0)])
    yb = np.array([1] * 6 + [2] * 3)
    model = R.CentroidPredictor(distance_threshold=0.5, min_cluster_size=2).fit(xb, yb)
    assert len(model.centroids) == 3 and model.max_per_class == 2
    q = _unit(np.array([[0.1, 1.0, 0.0, 0.0], [0.0, 0.0, 0.6, 0.8], [0.3, 0.0, 0.2, 0.9]], np.float32))
    pred = model.predict(["a", "b", "c"], q, topk=2)
    np.testing.assert_array_equal(pred.labels, [[1, 2], [2, 1], [1, 2]])
    np.testing.assert_allclose(pred.scores[0], [1 / np.sqrt(1.01), 0.0], atol=1e-5)
    np.testing.assert_allclose(pred.scores[1], [0.6, 0.0], atol=1e-5)
    np.testing.assert_allclose(pred.scores[2], np.array([0.3, 0.2]) / np.sqrt(0.94), atol=1e-5)
    model.threshold = 0.5
    pred = model.predict(["a", "b", "c"], q, topk=2)
    np.testing.assert_array_equal(pred.labels, [[1, -1], [2, -1], [-1, -1]])  # "c" is no landmark
    np.testing.assert_allclose(pred.scores[2], [0, 0])


def test_retrieve_command_knn_and_centroids(tmp_path, capsys):
    import pandas as pd

    from kit.cli import main
    from kit.predictions import Predictions, load_predictions, save_predictions

    rng = np.random.default_rng(3)
    centers = _unit(rng.normal(size=(3, 16)))
    xb, xq = _clusters(rng, centers, 6, 0.05), _clusters(rng, centers, 2, 0.05)
    ids = [f"i{j:02d}" for j in range(18)]
    save_predictions(Predictions(ids, np.zeros((18, 1)), np.zeros((18, 1)), _unit(xb)), tmp_path / "train.npz")
    save_predictions(Predictions(["q0", "q1", "q2", "q3", "q4", "q5"], np.zeros((6, 1)), np.zeros((6, 1)), _unit(xq)),
                     tmp_path / "test.npz")
    pd.DataFrame({"id": ids, "landmark_id": np.repeat([7, 8, 9], 6)}).to_csv(tmp_path / "labels.csv", index=False)
    common = ["--index", str(tmp_path / "train.npz"), "--labels", str(tmp_path / "labels.csv"),
              "--query", str(tmp_path / "test.npz"), "--topk", "2"]
    assert main(["retrieve", "knn", *common, "--k", "3", "--agg", "sum", "--out", str(tmp_path / "knn.npz")]) == 0
    pred = load_predictions(tmp_path / "knn.npz")
    np.testing.assert_array_equal(pred.labels[:, 0], [7, 7, 8, 8, 9, 9])
    # all 3 neighbours are of the query's class: its score is the sum of the 3 best similarities
    np.testing.assert_allclose(pred.scores[:, 0], _brute(xb, xq, 3)[0].sum(axis=1), atol=1e-5)
    np.testing.assert_array_equal(pred.labels[:, 1], -1)
    assert main(["retrieve", "centroids", *common, "--distance-threshold", "0.2", "--min-cluster-size", "3",
                 "--out", str(tmp_path / "cent.npz"), "--submission", str(tmp_path / "sub.csv")]) == 0
    pred = load_predictions(tmp_path / "cent.npz")
    np.testing.assert_array_equal(pred.labels[:, 0], [7, 7, 8, 8, 9, 9])
    assert np.all(pred.scores[:, 0] > 0.95) and np.all(pred.scores[:, 1] < 0.5)
    assert (tmp_path / "sub.csv").read_text().startswith("id,landmarks\nq0,7 ")
    # an index image without a label is a one-line error
    pd.DataFrame({"id": ids[:-1], "landmark_id": 1}).to_csv(tmp_path / "labels.csv", index=False)
    assert main(["retrieve", "knn", *common, "--out", str(tmp_path / "x.npz")]) == 2
    assert "1 index id(s) have no landmark_id (first: i17)" in capsys.readouterr().err


# ------------------------------------------------------------------- blocked torch scan (issue 12)
@pytest.mark.parametrize("n,q,k,qblock,dblock", [
    (1000, 50, 5, 4096, 16384),  # one block each way, fewer queries than a block
    (1000, 50, 40, 7, 16),       # k > database block, many query blocks
    (999, 33, 10, 8, 64),        # n and Q not multiples of the blocks
    (5, 3, 5, 2, 2),             # k = n
    (20000, 40, 3, 16, 512),     # many blocks: the group-bound merge path runs
])
@pytest.mark.parametrize("low", [False, True])
def test_torch_scan_equals_numpy_argsort(n, q, k, qblock, dblock, low):
    import torch

    rng = np.random.default_rng(n + k)
    xb, xq = S.l2n(rng.normal(size=(n, 16))), S.l2n(rng.normal(size=(q, 16)))
    t = torch.from_numpy(xb)
    sims, idx = B.torch_search(t, t.bfloat16() if low else None, xq, k, qblock=qblock, dblock=dblock)
    full = xq @ xb.T
    ref = np.argsort(-full, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(sims, np.take_along_axis(full, ref, 1), atol=1e-6)  # fp32 re-scored, not bf16


def test_cpu_bf16_index_rescores_from_the_rows_as_given_bit_identically():
    """SearchIndex's CPU bf16 scan keeps no normalised fp32 copy (it re-scores candidates as raw[i] / norm[i]):
    the same similarities, to the bit, and rows as the scan over l2n's copy; the caller's array is not copied."""
    import torch

    rng = np.random.default_rng(5)
    xb = (rng.normal(size=(3001, 24)) * rng.uniform(0.1, 9, (3001, 1))).astype(np.float32)
    xb[11] = 0  # a zero row stays zero
    xq = rng.normal(size=(70, 24)).astype(np.float32)
    si = S.SearchIndex(xb, backend="torch", gpu=False, precision="low", add_batch=1000)
    rows = si.index.rows
    assert si.kind == "torch-bfloat16" and isinstance(rows, B.UnitRows) and np.shares_memory(rows.raw.numpy(), xb)
    unit = torch.from_numpy(S.l2n(xb))
    assert torch.equal(si.index.low, unit.bfloat16())
    sims, idx = si.search(xq, 7)
    ref_s, ref_i = B.torch_search(unit, unit.bfloat16(), S.l2n(xq), 7)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(sims.view(np.int32), ref_s.view(np.int32))
    assert torch.equal(rows[torch.tensor([[11, 3], [0, 3000]])], unit[torch.tensor([[11, 3], [0, 3000]])])


def test_merge_topk_equals_one_topk_over_the_concatenation():
    import torch

    rng = np.random.default_rng(1)
    vals = torch.from_numpy(-np.sort(-rng.uniform(0.5, 0.9, (6, 8)), axis=1).astype(np.float32))
    idx = torch.from_numpy(rng.permutation(1000)[:48].reshape(6, 8).astype(np.int64))
    s = torch.from_numpy(rng.uniform(-1, 0.8, (6, 256)).astype(np.float32))
    s[2, 17], s[2, 200], s[5, 3] = 0.95, 0.86, 0.7  # a few entries above the rows' 8th best
    top, rows = B.merge_topk(vals, idx, s, 5000, 8)
    v, i = torch.cat([vals, s], 1), torch.cat([idx, torch.arange(5000, 5256).expand(6, -1)], 1)
    ref_v, j = v.topk(8, dim=1)
    np.testing.assert_array_equal(top.numpy(), ref_v.numpy())
    np.testing.assert_array_equal(rows.numpy(), i.gather(1, j).numpy())
    assert rows[2, 0] == 5017 and 5200 in rows[2].tolist()
    first, first_rows = B.merge_topk(None, None, s, 7, 3)  # the first block: its own top-k
    assert first_rows[2].tolist() == [24, 207, int(s[2].argsort(descending=True)[2]) + 7]


CPU, BF16, CUDA, FAISS_GPU = S.Hardware(), S.Hardware(bf16=True), S.Hardware(cuda=True), S.Hardware(faiss_gpu=True)


@pytest.mark.parametrize("rows,hw,backend,precision,kind", [
    (1000, CPU, "auto", "auto", "flat"),
    (300_000, CPU, "auto", "auto", "ivf"),                      # IVF above ivf_threshold on a plain CPU
    (300_000, BF16, "auto", "auto", "torch-bfloat16"),          # the exact bf16 scan beats IVF there
    (300_000, BF16, "faiss", "auto", "ivf"),                    # unless faiss is asked for
    (300_000, CUDA, "auto", "auto", "torch-cuda-float16"),      # torch CUDA without faiss-gpu
    (300_000, CUDA, "auto", "fp32", "torch-cuda"),
    (300_000, FAISS_GPU, "auto", "auto", "flat-gpu"),           # 300k x 64 floats fit in gpu_flat_gb
    (50_000_000, FAISS_GPU, "auto", "auto", "ivf-gpu"),         # 12.8 GB do not
    (1000, S.Hardware(faiss=False), "auto", "auto", "torch"),   # no faiss: the scan
    (150_000, CPU, "torch", "auto", "torch"),                   # above low_min, but bf16 is emulated here
    (150_000, BF16, "torch", "auto", "torch-bfloat16"),
    (1000, CPU, "torch", "low", "torch-bfloat16"),              # asked for
    (1000, CUDA, "torch", "auto", "torch-cuda"),
])
def test_choose_backend_from_size_and_hardware(rows, hw, backend, precision, kind):
    assert S.choose_backend(rows, 64, hw, backend, precision) == kind
    assert kind in S.KINDS


@pytest.mark.parametrize("backend,precision,message", [("annoy", "auto", "unknown backend 'annoy'"),
                                                       ("torch", "int4", "unknown precision 'int4'")])
def test_choose_backend_rejects_unknown_names(backend, precision, message):
    with pytest.raises(S.KitError, match=message):
        S.choose_backend(10, 4, CPU, backend, precision)


def test_search_index_low_precision_and_k_above_n(data):
    xb, xq = data
    index = R.SearchIndex(xb, backend="torch", gpu=False, precision="low")
    assert index.kind == "torch-bfloat16"
    sims, idx = index.search(xq, 500)  # k > n: all 300 rows, as the fp32 path and faiss Flat give
    ref_s, ref_i = _brute(xb, xq, 300)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)
    assert R.SearchIndex(xb, backend="torch", gpu=False).kind == "torch"  # small: fp32 unless asked
    with pytest.raises(S.KitError, match="precision"):
        R.SearchIndex(xb, backend="torch", precision="int4")
