"""Query expansion (alpha-QE) and database-side augmentation (DBA) of L2-normalised global descriptors: a vector
plus its nearest index vectors weighted by max(sim, 0) ** alpha (Radenovic et al. 2018; GLR 2019-2020 winners)."""
from __future__ import annotations

import numpy as np

from kit.errors import KitError
from kit.inference.search import SearchIndex, l2n


def weighted_neighbours(x: np.ndarray, xb: np.ndarray, sims: np.ndarray, idx: np.ndarray, alpha: float) -> np.ndarray:
    """l2n(x + sum_j max(sim_j, 0) ** alpha * xb[idx_j]) per row (idx -1 = no neighbour)."""
    w = np.where(idx >= 0, np.clip(sims, 0, None) ** alpha, 0.0).astype(np.float32)
    return l2n(x + np.einsum("qk,qkd->qd", w, xb[np.maximum(idx, 0)]))


def alpha_qe(queries: np.ndarray, xb: np.ndarray, k: int, alpha: float = 3.0, index: SearchIndex | None = None) -> np.ndarray:
    """alpha-QE: each query + its k nearest rows of `xb`, weighted by sim ** alpha; k = 0 is a no-op."""
    if k < 0 or alpha < 0:
        raise KitError(f"query expansion: k={k}, alpha={alpha} (both must be >= 0)")
    q = l2n(queries)
    if k == 0 or len(xb) == 0:
        return q
    xb = l2n(xb)
    sims, idx = (index or SearchIndex(xb)).search(q, k)
    return weighted_neighbours(q, xb, sims, idx, alpha)


def dba(xb: np.ndarray, k: int, alpha: float = 3.0) -> np.ndarray:
    """DBA: each index row replaced by the sim ** alpha weighted sum of its k nearest rows (itself first);
    k <= 1 is a no-op."""
    if k < 0 or alpha < 0:
        raise KitError(f"database augmentation: k={k}, alpha={alpha} (both must be >= 0)")
    xb = l2n(xb)
    if k <= 1 or len(xb) < 2:
        return xb
    sims, idx = SearchIndex(xb).search(xb, k)
    return weighted_neighbours(np.zeros_like(xb), xb, sims, idx, alpha)
