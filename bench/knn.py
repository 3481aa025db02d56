"""Benchmark: kit's faiss kNN (kit.inference.retrieval.SearchIndex) vs scikit-learn brute-force NearestNeighbors.

1M x 512 float32 clustered, L2-normalised embeddings (random cluster centres + noise, like class
embeddings of a trained model); queries are noisy copies of database rows. Both find the k=10
nearest neighbours by cosine similarity (= inner product on unit vectors): faiss IndexFlatIP (exact)
and IndexIVFFlat (nlist = sqrt(N), what kit uses above 200k vectors) against sklearn
NearestNeighbors(algorithm="brute", metric="cosine"), plus kit's torch matmul + top-k fallback
(backend="torch"). Reports times, the speed ratio and how far the
results agree. Writes bench/results/knn.json.

    .venv/bin/python bench/knn.py                  # 1M x 512, 200 queries (~2 min on 2 cores)
    .venv/bin/python bench/knn.py --n 100000       # quicker
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_data(n: int, dim: int, n_queries: int, n_clusters: int, noise: float, seed: int):
    """Unit vectors around `n_clusters` random centres, built in chunks to bound peak memory."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        x[s:e] = rng.random((e - s, dim), dtype=np.float32)  # uniform noise: 3x cheaper than normal
        x[s:e] -= 0.5
        x[s:e] *= noise * np.sqrt(12.0)                       # std `noise`
        x[s:e] += centres[rng.integers(0, n_clusters, e - s)]
        x[s:e] /= np.linalg.norm(x[s:e], axis=1, keepdims=True)
    q = x[rng.choice(n, n_queries, replace=False)] + 0.5 * noise * rng.standard_normal((n_queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def agreement(ref_idx, ref_sim, idx, sim) -> dict:
    """Exact row matches, recall@k of `idx` against `ref_idx`, and the largest similarity difference."""
    k = ref_idx.shape[1]
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_idx, idx)])
    return {"rows_identical": float(np.mean((ref_idx == idx).all(axis=1))), "recall_at_k": float(recall),
            "max_abs_sim_diff": float(np.abs(np.sort(ref_sim, 1) - np.sort(sim, 1)).max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=0.1, help="noise std per dimension around a centre")
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for faiss and BLAS")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "knn.json"))
    args = ap.parse_args(argv)

    import faiss
    import sklearn
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    from kit.atomic import write_json
    from kit.inference.search import SearchIndex

    faiss.omp_set_num_threads(args.threads)
    (x, q), t_data = timed(lambda: make_data(args.n, args.dim, args.queries, args.clusters, args.noise, args.seed))
    print(f"data {x.shape} float32 ({x.nbytes / 2**30:.2f} GiB) + {len(q)} queries in {t_data:.1f}s", flush=True)
    res = {"n": args.n, "dim": args.dim, "queries": args.queries, "k": args.k, "clusters": args.clusters,
           "noise": args.noise, "threads": args.threads, "cpu_count": os.cpu_count(),
           "machine": platform.processor() or platform.machine(), "faiss": faiss.__version__,
           "sklearn": sklearn.__version__, "numpy": np.__version__, "data_seconds": round(t_data, 2),
           "load_average_at_start": os.getloadavg()[0]}

    flat, t_build = timed(lambda: SearchIndex(x, ivf_threshold=args.n + 1, gpu=False))
    (f_sim, f_idx), t_search = timed(lambda: flat.search(q, args.k))
    # faiss switches from its SIMD loop to BLAS sgemm at 20 queries; its wheel's bundled OpenBLAS can
    # be the slower of the two on some CPUs, so time both paths on the same index.
    blas_threshold = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = len(q) + 1
    (d_sim, d_idx), t_direct = timed(lambda: flat.search(q, args.k))
    faiss.cvar.distance_compute_blas_threshold = blas_threshold
    res["faiss_flat"] = {"kind": flat.kind, "build_s": round(t_build, 3), "search_s": round(t_search, 3),
                         "search_simd_no_blas_s": round(t_direct, 3)}
    print(f"faiss {flat.kind}: build {t_build:.2f}s, search {t_search:.2f}s (BLAS), {t_direct:.2f}s (SIMD)",
          flush=True)
    del flat

    with threadpool_limits(args.threads):
        import torch

        torch.set_num_threads(args.threads)
        tix, t_tbuild = timed(lambda: SearchIndex(x, backend="torch"))
        (t_sim, t_idx), t_tsearch = timed(lambda: tix.search(q, args.k))
        del tix
    res["torch_exact"] = {"build_s": round(t_tbuild, 3), "search_s": round(t_tsearch, 3)}
    print(f"torch exact (kit fallback): search {t_tsearch:.2f}s", flush=True)

    with threadpool_limits(args.threads):
        nn, t_fit = timed(lambda: NearestNeighbors(n_neighbors=args.k, algorithm="brute", metric="cosine",
                                                   n_jobs=args.threads).fit(x))
        (s_dist, s_idx), t_query = timed(lambda: nn.kneighbors(q))
    s_sim = 1 - s_dist
    res["sklearn_brute_cosine"] = {"fit_s": round(t_fit, 3), "search_s": round(t_query, 3)}
    print(f"sklearn brute cosine: fit {t_fit:.2f}s, search {t_query:.2f}s", flush=True)
    del nn

    res["speedup_flat_vs_sklearn"] = round(t_query / t_search, 2)
    res["speedup_flat_simd_vs_sklearn"] = round(t_query / t_direct, 2)
    res["flat_simd_vs_flat_blas"] = agreement(f_idx, f_sim, d_idx, d_sim)
    res["speedup_torch_vs_sklearn"] = round(t_query / t_tsearch, 2)
    res["torch_vs_sklearn"] = agreement(s_idx, s_sim, t_idx, t_sim)
    res["flat_vs_sklearn"] = agreement(s_idx, s_sim, f_idx, f_sim)
    print(f"faiss flat is {res['speedup_flat_vs_sklearn']}x faster; agreement {res['flat_vs_sklearn']}", flush=True)

    ivf, t_build = timed(lambda: SearchIndex(x, ivf_threshold=0, nprobe=args.nprobe, gpu=False, seed=args.seed,
                                          backend="faiss"))
    (i_sim, i_idx), t_search_ivf = timed(lambda: ivf.search(q, args.k))
    res["faiss_ivf"] = {"kind": ivf.kind, "nprobe": args.nprobe, "build_s": round(t_build, 3),
                        "search_s": round(t_search_ivf, 3), "speedup_vs_sklearn": round(t_query / t_search_ivf, 1),
                        **agreement(f_idx, f_sim, i_idx, i_sim)}
    print(f"faiss {ivf.kind} nprobe {args.nprobe}: build {t_build:.2f}s, search {t_search_ivf:.3f}s, "
          f"recall@{args.k} vs exact {res['faiss_ivf']['recall_at_k']:.4f}", flush=True)
    res["load_average_at_end"] = os.getloadavg()[0]  # other processes competing for the cores
    write_json(res, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
