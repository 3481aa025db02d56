"""Nearest-neighbour search over L2-normalised embeddings: faiss (IVF above a size, GPU when present) or
an exact blocked torch scan; the one index every retrieval, expansion, filter and report step uses."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from kit.errors import KitError


def l2n(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32 C-contiguous (what faiss wants)."""
    x = np.asarray(x, np.float32)
    return np.ascontiguousarray(x / row_norms(x))


def row_norms(x: np.ndarray) -> np.ndarray:
    """[N, 1] L2 norms of the rows, at least 1e-12 (a zero row divided by it stays zero): l2n's divisor."""
    return np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


BACKENDS = ("faiss", "torch", "auto")
PRECISIONS = ("auto", "fp32", "low")


class SearchIndex:
    """Inner-product kNN over rows of `xb` (L2-normalised): faiss Flat (exact) or IVF-Flat above
    `ivf_threshold` rows (nlist ~ sqrt(N), `nprobe` lists searched); on a faiss GPU, Flat up to
    `gpu_flat_gb` of vectors. backend="torch" (or no faiss) is an exact blocked scan (`torch_search`),
    on CUDA when available (`gpu=False` keeps it on CPU). backend="auto" (default) is faiss except where the
    torch scan is exact and faster than IVF: above `ivf_threshold` without a faiss GPU, when torch has
    CUDA or the CPU has native bf16 (AMX; bench/scale.py: GLDv2 size in 14 min at recall 1.0 on 2
    shared cores, faiss IVF 17.5 min at 0.66).
    precision: "low" scans in fp16 (CUDA) / bf16 (CPU) and re-scores the candidates in fp32; "auto" =
    low above `low_min` rows on CUDA or on a CPU with native bf16 (below, fp32: results as before);
    "fp32" never."""

    def __init__(self, xb: np.ndarray, ivf_threshold: int = 200_000, nlist: int | None = None,
                 nprobe: int = 16, gpu: bool | None = None, seed: int = 0, backend: str = "auto",
                 add_batch: int = 262_144, gpu_flat_gb: float = 8.0, precision: str = "auto",
                 low_min: int = 100_000):
        if backend not in BACKENDS:
            raise KitError(f"retrieval: unknown backend '{backend}' (valid: {', '.join(BACKENDS)})")
        if precision not in PRECISIONS:
            raise KitError(f"retrieval: unknown precision '{precision}' (valid: {', '.join(PRECISIONS)})")
        self.n, d = np.shape(xb)
        self.faiss = _faiss() if backend != "torch" else None
        use_gpu = self.faiss is not None and hasattr(self.faiss, "StandardGpuResources") and (
            self.faiss.get_num_gpus() > 0 if gpu is None else gpu)
        if backend == "auto" and not use_gpu and self.n > ivf_threshold and (_torch_cuda(gpu) or cpu_has_bf16()):
            self.faiss = None  # exact torch scan: on CUDA (no faiss-gpu) or a bf16 CPU, rather than IVF
        if self.faiss is None:  # faiss holds its own copy; only this keeps ours
            cpu_low = precision == "low" or (precision == "auto" and self.n > low_min and cpu_has_bf16())
            if cpu_low and not _torch_cuda(gpu):  # bf16 scan, candidates re-scored from the rows as given (not
                rows = _UnitRows(xb, add_batch)   # copied, so not to be changed): no normalised fp32 copy
                self.xb, self.xb_low, self.kind = rows, rows.low, "torch-bfloat16"
                return
            self.xb, self.kind = _torch_database(l2n(xb), gpu)
            fast_low = self.xb.is_cuda or cpu_has_bf16()
            low = precision == "low" or (precision == "auto" and self.n > low_min and fast_low)
            self.xb_low = self.xb.to(_low_dtype(self.xb.device)) if low else None
            self.kind += f"-{str(self.xb_low.dtype).split('.')[-1]}" if low else ""
            return
        faiss = self.faiss
        if self.n > ivf_threshold and not (use_gpu and self.n * d * 4 <= gpu_flat_gb * 2**30):
            nlist = nlist or int(np.sqrt(self.n))
            self._quantizer = faiss.IndexFlatIP(d)  # kept referenced: the IVF index does not own it
            index = faiss.IndexIVFFlat(self._quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            index.train(l2n(xb[np.sort(rng.choice(self.n, min(self.n, 64 * nlist), replace=False))]))
            index.nprobe = nprobe
            self.kind = f"ivf{nlist}"
        else:
            index = faiss.IndexFlatIP(d)
            self.kind = "flat"
        if use_gpu:
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, 0, index)
            self.kind += "-gpu"
        for i in range(0, self.n, add_batch):  # normalised in chunks: no second full copy beside faiss's
            index.add(l2n(xb[i:i + add_batch]))
        self.index = index

    def __len__(self) -> int:
        return self.n

    def search(self, xq: np.ndarray, k: int, batch: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """(similarities [Q, k], row indices [Q, k]) best first; index -1 where fewer than k exist."""
        xq = l2n(xq)
        k = max(1, min(k, self.n))
        if self.faiss is not None:
            out = [self.index.search(xq[i:i + batch], k) for i in range(0, len(xq), batch)]
        else:
            out = [torch_search(self.xb, self.xb_low, xq[i:i + batch], k) for i in range(0, len(xq), batch)]
        if not out:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out]).astype(np.int64)


def reference_similarity(query_emb: np.ndarray, query_ids, ref_emb: np.ndarray, ref_ids, k: int) -> np.ndarray:
    """[Q] mean cosine of each query's k most similar reference images, its own id excluded (a set can be
    its own reference without leaking); 0 where no reference is left. GLR 2020's non-landmark signal: how
    much an image looks like photos of the reference set (non-landmarks, or a test set, mostly non-landmarks)."""
    query_ids, ref_ids = np.asarray(query_ids).astype(str), np.asarray(ref_ids).astype(str)
    if len(ref_ids) == 0 or len(query_ids) == 0 or k <= 0:
        return np.zeros(len(query_ids), np.float32)
    sims, nn = SearchIndex(ref_emb).search(query_emb, min(k + 1, len(ref_ids)))
    same = (nn >= 0) & (ref_ids[np.maximum(nn, 0)] == query_ids[:, None])
    sims = np.where(same | (nn < 0), np.nan, sims)
    sims = np.where(np.cumsum(~np.isnan(sims), axis=1) <= k, sims, np.nan)  # the first k valid ones
    n = np.sum(~np.isnan(sims), axis=1)
    return (np.nansum(sims, axis=1) / np.maximum(n, 1)).astype(np.float32)


def _torch_database(xb: np.ndarray, gpu: bool | None):
    """The normalised vectors as a torch tensor: on CUDA when available (unless gpu=False), else a
    zero-copy view of the numpy array."""
    import torch

    if gpu is not False and torch.cuda.is_available():
        return torch.from_numpy(xb).cuda(), "torch-cuda"
    return torch.from_numpy(xb), "torch"


class _UnitRows:
    """The database rows as given (float32, not copied), read as unit rows: `rows[idx]` = raw[idx] / norm[idx], the
    same floats as `l2n(raw)[idx]` (its `row_norms`, IEEE division). The bf16 scan's fp32 re-score reads only its
    candidates, so no normalised fp32 copy of the whole database is kept; `low` is that scan's bf16 copy."""

    def __init__(self, xb: np.ndarray, batch: int):
        import torch

        raw = np.ascontiguousarray(np.asarray(xb, np.float32))
        self.raw = torch.from_numpy(raw)
        norm = np.empty((len(raw), 1), np.float32)
        self.low = torch.empty(raw.shape, dtype=torch.bfloat16)
        for a in range(0, len(raw), batch):  # l2n in chunks: one chunk of temporaries, never a second full copy
            norm[a:a + batch] = row_norms(raw[a:a + batch])
            self.low[a:a + batch] = torch.from_numpy(raw[a:a + batch] / norm[a:a + batch])
        self.norm = torch.from_numpy(norm)
        self.device = self.raw.device

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, idx):
        return self.raw[idx] / self.norm[idx]


def _torch_cuda(gpu: bool | None) -> bool:
    import torch

    return gpu is not False and torch.cuda.is_available()


@functools.cache
def cpu_has_bf16() -> bool:
    """This CPU multiplies bf16 natively (AMX or avx512_bf16) and torch's oneDNN uses it: only there is
    the bf16 scan faster than fp32 (measured ~2-4x here); elsewhere bf16 is emulated."""
    import torch

    try:
        ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        flags = Path("/proc/cpuinfo").read_text()
    except (AttributeError, RuntimeError, OSError):
        return False
    return ok and re.search(r"\b(amx_bf16|avx512_bf16)\b", flags) is not None


def _low_dtype(device):
    import torch

    return torch.float16 if device.type == "cuda" else torch.bfloat16


def torch_search(xb, xb_low, xq: np.ndarray, k: int, qblock: int = 4096, dblock: int = 16_384,
                 rescore_batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products of queries `xq` against rows of `xb` (torch, fp32), k <= len(xb).
    Blocks of `qblock` queries x `dblock` rows (memory bounded by one block, never Q x N); per block
    only the entries above each query's current k-th best are merged (a comparison, not a top-k).
    With `xb_low` (xb in bf16/fp16) the scan keeps max(2k, 32) candidates by low-precision score and
    re-scores them in fp32: exact unless rounding (~3e-3) pushes a true neighbour below 32 others."""
    import torch

    n, dev = len(xb), xb.device
    scan = xb if xb_low is None else xb_low
    kc = k if xb_low is None else min(n, max(2 * k, 32))
    sims, rows = np.empty((len(xq), k), np.float32), np.empty((len(xq), k), np.int64)
    for q0 in range(0, len(xq), qblock):
        q = torch.from_numpy(np.ascontiguousarray(xq[q0:q0 + qblock])).to(dev)
        ql, vals, idx = q.to(scan.dtype), None, None
        for d0 in range(0, n, dblock):
            vals, idx = _merge(vals, idx, ql @ scan[d0:d0 + dblock].T, d0, kc)
        if xb_low is not None:  # exact fp32 similarities of the candidates, then the final order
            vals = torch.cat([torch.einsum("qd,qkd->qk", q[a:a + rescore_batch], xb[idx[a:a + rescore_batch]])
                              for a in range(0, len(q), rescore_batch)])
        v, j = vals.topk(k, dim=1)
        sims[q0:q0 + len(q)], rows[q0:q0 + len(q)] = v.cpu().numpy(), idx.gather(1, j).cpu().numpy()
    return sims, rows


def _merge(vals, idx, s, d0: int, kc: int, group: int = 32):
    """Running top-kc (values fp32 [Q, kc], row indices) of each query merged with similarity block `s`
    (first column = row d0). Columns form `group`-sized groups (j, j + w, ...); a group whose max is
    not above the query's current kc-th best cannot contribute, so once that bound is positive only
    the surviving groups are read (their max taken on the floats' integer bits, which order positive
    floats like the floats). Early blocks, or many survivors, take a plain top-k of the block."""
    import torch

    q, b = s.shape
    bound = vals is not None and vals.shape[1] == kc and b % group == 0 and bool((vals[:, -1] > 0).all())
    if bound:
        as_int = {2: torch.int16, 4: torch.int32}[s.element_size()]
        w = b // group
        gmax = s.view(as_int).view(q, group, w).amax(1)  # [Q, w]
        r, g = (gmax > vals[:, -1:].to(s.dtype).view(as_int)).nonzero(as_tuple=True)
        if not len(r):
            return vals, idx
        counts = torch.bincount(r, minlength=q)
        m = int(counts.max())
        bound = 4 * m * group <= b
    if bound:  # the surviving groups' entries, padded per query to [Q, m * group]
        cols = g[:, None] + w * torch.arange(group, device=s.device)
        pos = torch.arange(len(r), device=s.device) - (torch.cumsum(counts, 0) - counts)[r]
        v = torch.full((q, m, group), -float("inf"), device=s.device)
        i = torch.zeros((q, m, group), dtype=torch.int64, device=s.device)
        v[r, pos], i[r, pos] = s[r[:, None], cols].float(), cols + d0
        v, i = v.view(q, -1), i.view(q, -1)
    else:
        v, i = s.topk(min(kc, b), dim=1)
        v, i = v.float(), i + d0
    if vals is None:
        return v, i
    v, i = torch.cat([vals, v], 1), torch.cat([idx, i], 1)
    top, j = v.topk(min(kc, v.shape[1]), dim=1)
    return top, i.gather(1, j)
