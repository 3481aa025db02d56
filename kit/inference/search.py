"""Nearest-neighbour search over L2-normalised embeddings: the one index every retrieval, expansion, filter and
report step uses. `choose_backend` picks the backend from the data's size and the hardware (a pure function):
`FaissIndex` (Flat or IVF) here, or an exact torch scan (kit.inference.torch_index)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.registry import Registry


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


BACKENDS = Registry("backend", dict.fromkeys(("faiss", "torch", "auto")))
PRECISIONS = Registry("precision", dict.fromkeys(("auto", "fp32", "low")))
KINDS = ("flat", "ivf", "flat-gpu", "ivf-gpu", "torch", "torch-bfloat16", "torch-cuda", "torch-cuda-float16")


@dataclass(frozen=True)
class Hardware:
    """What the index can run on: faiss installed, faiss with a GPU, torch with CUDA, a CPU with native bf16."""

    faiss: bool = True
    faiss_gpu: bool = False
    cuda: bool = False
    bf16: bool = False


def detect_hardware(gpu: bool | None = None, probe_torch: bool = True) -> Hardware:
    """The Hardware here; `gpu=False` hides the GPUs, `gpu=True` asks faiss for one even if it counts none.
    With probe_torch=False torch is not imported and CUDA and bf16 read as absent."""
    faiss = _faiss()
    faiss_gpu = faiss is not None and hasattr(faiss, "StandardGpuResources") and bool(
        faiss.get_num_gpus() > 0 if gpu is None else gpu)
    if not probe_torch:
        return Hardware(faiss is not None, faiss_gpu)
    import torch

    return Hardware(faiss is not None, faiss_gpu, gpu is not False and torch.cuda.is_available(), cpu_has_bf16())


def choose_backend(rows: int, dim: int, hw: Hardware, backend: str = "auto", precision: str = "auto",
                   ivf_threshold: int = 200_000, gpu_flat_gb: float = 8.0, low_min: int = 100_000) -> str:
    """The index kind (one of KINDS) for `rows` x `dim` floats on `hw`: faiss Flat, or IVF above `ivf_threshold`
    rows unless a faiss GPU holds them in `gpu_flat_gb`; else the exact torch scan (no faiss, backend="torch", or
    "auto" above `ivf_threshold` with CUDA or a bf16 CPU: bench/scale.py, GLDv2 size in 14 min at recall 1.0, IVF
    17.5 min at 0.66); precision "low" scans in fp16/bf16, re-scored in fp32 ("auto": above `low_min` rows on CUDA
    or a bf16 CPU)."""
    BACKENDS.check(backend, "retrieval: ")
    PRECISIONS.check(precision, "retrieval: ")
    big = rows > ivf_threshold
    scan_wins = backend == "auto" and big and not hw.faiss_gpu and (hw.cuda or hw.bf16)
    if hw.faiss and backend != "torch" and not scan_wins:
        ivf = big and not (hw.faiss_gpu and rows * dim * 4 <= gpu_flat_gb * 2**30)
        return ("ivf" if ivf else "flat") + ("-gpu" if hw.faiss_gpu else "")
    low = precision == "low" or (precision == "auto" and rows > low_min)
    if hw.cuda:
        return "torch-cuda-float16" if low else "torch-cuda"
    return "torch-bfloat16" if low and (precision == "low" or hw.bf16) else "torch"


class SearchIndex:
    """Inner-product kNN over the rows of `xb` (normalised here) with the backend `choose_backend` picks;
    `kind` names it ("ivf<nlist>" for IVF)."""

    def __init__(self, xb: np.ndarray, ivf_threshold: int = 200_000, nlist: int | None = None,
                 nprobe: int = 16, gpu: bool | None = None, seed: int = 0, backend: str = "auto",
                 add_batch: int = 262_144, gpu_flat_gb: float = 8.0, precision: str = "auto",
                 low_min: int = 100_000):
        self.n, dim = np.shape(xb)
        faiss = _faiss()  # torch takes seconds to import: probed only where the choice depends on it
        probe = backend == "torch" or faiss is None or (backend == "auto" and self.n > ivf_threshold)
        kind = choose_backend(self.n, dim, detect_hardware(gpu, probe), backend, precision, ivf_threshold,
                              gpu_flat_gb, low_min)
        if kind in ("flat", "ivf", "flat-gpu", "ivf-gpu"):
            self.index = FaissIndex(faiss, xb, kind.startswith("ivf"), kind.endswith("-gpu"), nlist, nprobe, seed,
                                    add_batch)
        else:
            from kit.inference import torch_index  # imports torch (seconds): only for a torch backend

            if kind == "torch-bfloat16":  # the rows' norms, in chunks: no normalised fp32 copy
                raw = np.asarray(xb, np.float32)
                norms = np.concatenate([row_norms(raw[a:a + add_batch]) for a in range(0, max(self.n, 1), add_batch)])
                self.index = torch_index.Bf16Index(xb, norms.reshape(-1, 1), add_batch)
            else:
                self.index = torch_index.TorchIndex(l2n(xb), kind.startswith("torch-cuda"), kind.endswith("float16"))
        self.kind = self.index.kind

    def __len__(self) -> int:
        return self.n

    def search(self, xq: np.ndarray, k: int, batch: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """(similarities [Q, k], row indices [Q, k]) best first; index -1 where fewer than k exist."""
        xq = l2n(xq)
        k = max(1, min(k, self.n))
        out = [self.index.search(xq[i:i + batch], k) for i in range(0, len(xq), batch)]
        if not out:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out]).astype(np.int64)


class FaissIndex:
    """faiss inner-product index: Flat (exact) or IVF-Flat (`nlist` lists, default sqrt(N); `nprobe` searched;
    trained on 64 * nlist rows drawn with `seed`), moved to GPU 0 with `gpu`."""

    def __init__(self, faiss, xb: np.ndarray, ivf: bool, gpu: bool, nlist: int | None = None, nprobe: int = 16,
                 seed: int = 0, add_batch: int = 262_144):
        n, d = np.shape(xb)
        if ivf:
            nlist = nlist or int(np.sqrt(n))
            self._quantizer = faiss.IndexFlatIP(d)  # kept referenced: the IVF index does not own it
            index = faiss.IndexIVFFlat(self._quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            train = np.sort(np.random.default_rng(seed).choice(n, min(n, 64 * nlist), replace=False))
            index.train(l2n(xb[train]))
            index.nprobe = nprobe
            self.kind = f"ivf{nlist}"
        else:
            index, self.kind = faiss.IndexFlatIP(d), "flat"
        if gpu:
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, 0, index)
            self.kind += "-gpu"
        for i in range(0, n, add_batch):  # normalised in chunks: no second full copy beside faiss's
            index.add(l2n(xb[i:i + add_batch]))
        self.index, self.search = index, index.search   # search(xq, k) -> (similarities, rows)


def reference_similarity(query_emb: np.ndarray, query_ids, ref_emb: np.ndarray, ref_ids, k: int) -> np.ndarray:
    """[Q] mean cosine of each query's k most similar reference images, its own id excluded (0 where none is
    left): GLR 2020's non-landmark signal, how much an image looks like the (mostly non-landmark) reference set."""
    query_ids, ref_ids = np.asarray(query_ids).astype(str), np.asarray(ref_ids).astype(str)
    if len(ref_ids) == 0 or len(query_ids) == 0 or k <= 0:
        return np.zeros(len(query_ids), np.float32)
    sims, nn = SearchIndex(ref_emb).search(query_emb, min(k + 1, len(ref_ids)))
    same = (nn >= 0) & (ref_ids[np.maximum(nn, 0)] == query_ids[:, None])
    sims = np.where(same | (nn < 0), np.nan, sims)
    sims = np.where(np.cumsum(~np.isnan(sims), axis=1) <= k, sims, np.nan)  # the first k valid ones
    n = np.sum(~np.isnan(sims), axis=1)
    return (np.nansum(sims, axis=1) / np.maximum(n, 1)).astype(np.float32)


@functools.cache
def cpu_has_bf16() -> bool:
    """The CPU multiplies bf16 natively (AMX or avx512_bf16) and torch's oneDNN uses it: only there is the
    bf16 scan faster than fp32 (~2-4x); elsewhere bf16 is emulated."""
    import torch

    try:
        ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        flags = Path("/proc/cpuinfo").read_text()
    except (AttributeError, RuntimeError, OSError):
        return False
    return ok and re.search(r"\b(amx_bf16|avx512_bf16)\b", flags) is not None
