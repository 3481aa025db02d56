"""Nearest-neighbour search over L2-normalised embeddings: faiss (IVF above a size, GPU when present) or
torch top-k; the one index every retrieval, expansion, filter and report step uses."""
from __future__ import annotations

import numpy as np

from kit.errors import KitError


def l2n(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32 C-contiguous (what faiss wants)."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norm, 1e-12))


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class SearchIndex:
    """Inner-product kNN over rows of `xb` (L2-normalised): faiss Flat (exact) or IVF-Flat above
    `ivf_threshold` rows (nlist ~ sqrt(N), `nprobe` lists searched); on a faiss GPU, Flat up to
    `gpu_flat_gb` of vectors. backend="torch" (or no faiss) is an exact matmul + top-k, chunked to
    bound memory, on CUDA when available (`gpu=False` keeps it on CPU)."""

    def __init__(self, xb: np.ndarray, ivf_threshold: int = 200_000, nlist: int | None = None,
                 nprobe: int = 16, gpu: bool | None = None, seed: int = 0, backend: str = "faiss",
                 add_batch: int = 262_144, gpu_flat_gb: float = 8.0):
        if backend not in ("faiss", "torch"):
            raise KitError(f"retrieval: unknown backend '{backend}' (valid: faiss, torch)")
        self.n, d = np.shape(xb)
        self.faiss = _faiss() if backend == "faiss" else None
        if self.faiss is None:
            self.xb, self.kind = _torch_database(l2n(xb), gpu)  # faiss holds its own copy; only this keeps ours
            return
        faiss = self.faiss
        use_gpu = (faiss.get_num_gpus() > 0 if gpu is None else gpu) and hasattr(faiss, "StandardGpuResources")
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
        else:  # chunks of queries whose similarity block stays under ~512 MB
            batch = max(1, min(batch, 2**27 // max(self.n, 1)))
            out = [_torch_topk(self.xb, xq[i:i + batch], k) for i in range(0, len(xq), batch)]
        if not out:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out]).astype(np.int64)


def _torch_database(xb: np.ndarray, gpu: bool | None):
    """The normalised vectors as a torch tensor: on CUDA when available (unless gpu=False), else a
    zero-copy view of the numpy array."""
    import torch

    if gpu is not False and torch.cuda.is_available():
        return torch.from_numpy(xb).cuda(), "torch-cuda"
    return torch.from_numpy(xb), "torch"


def _torch_topk(xb, xq: np.ndarray, k: int):
    import torch

    xb = torch.from_numpy(xb) if isinstance(xb, np.ndarray) else xb
    sims = torch.from_numpy(xq).to(xb.device) @ xb.T
    s, i = sims.topk(k, dim=1)
    return s.cpu().numpy(), i.cpu().numpy()
