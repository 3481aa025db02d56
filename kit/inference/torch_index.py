"""The torch backends of kit.inference.search.SearchIndex: an exact blocked scan (fp32, or fp16 with an fp32
re-score on CUDA) and the CPU bf16 scan; each searches L2-normalised queries -> (similarities, rows), k <= N."""
from __future__ import annotations

import numpy as np
import torch


class TorchIndex:
    """Exact blocked scan (`torch_search`) of the unit rows `unit` (float32), on CUDA with `cuda`; with `low` the
    scan runs in fp16 and its candidates are re-scored in fp32."""

    def __init__(self, unit: np.ndarray, cuda: bool = False, low: bool = False):
        rows = torch.from_numpy(unit)  # on the CPU a view, not a copy
        self.rows = rows.cuda() if cuda else rows
        self.low = self.rows.half() if low else None
        self.kind = "torch" + ("-cuda" if cuda else "") + ("-float16" if low else "")

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return torch_search(self.rows, self.low, xq, k)


class Bf16Index(TorchIndex):
    """CPU scan in bf16, candidates re-scored in fp32 from the rows as given (not copied, so not to be changed):
    only the bf16 copy is kept, no normalised fp32 one."""

    def __init__(self, xb: np.ndarray, norms: np.ndarray, add_batch: int = 262_144):
        self.rows, self.kind = UnitRows(xb, norms, add_batch), "torch-bfloat16"
        self.low = self.rows.low


class UnitRows:
    """The rows as given (float32, not copied), read as unit rows: `rows[idx]` = raw[idx] / norms[idx], the same
    floats as `l2n(raw)[idx]` given its divisors `norms` [N, 1] (IEEE division); `low` is their bf16 copy."""

    def __init__(self, xb: np.ndarray, norms: np.ndarray, batch: int):
        raw = np.ascontiguousarray(np.asarray(xb, np.float32))
        self.raw, self.norm = torch.from_numpy(raw), torch.from_numpy(norms)
        self.low = torch.empty(raw.shape, dtype=torch.bfloat16)
        for a in range(0, len(raw), batch):  # in chunks: one chunk of temporaries, never a second full copy
            self.low[a:a + batch] = torch.from_numpy(raw[a:a + batch] / norms[a:a + batch])
        self.device = self.raw.device

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, idx):
        return self.raw[idx] / self.norm[idx]


def torch_search(xb, xb_low, xq: np.ndarray, k: int, qblock: int = 4096, dblock: int = 16_384,
                 rescore_batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products of queries `xq` against rows of `xb` (fp32), k <= len(xb), in blocks of `qblock`
    queries x `dblock` rows (memory: one block). With `xb_low` (bf16/fp16) the scan keeps max(2k, 32) candidates
    and re-scores them in fp32: exact unless rounding (~3e-3) pushes a true neighbour below 32 others."""
    n, dev = len(xb), xb.device
    scan = xb if xb_low is None else xb_low
    kc = k if xb_low is None else min(n, max(2 * k, 32))
    sims, rows = np.empty((len(xq), k), np.float32), np.empty((len(xq), k), np.int64)
    for q0 in range(0, len(xq), qblock):
        q = torch.from_numpy(np.ascontiguousarray(xq[q0:q0 + qblock])).to(dev)
        ql, vals, idx = q.to(scan.dtype), None, None
        for d0 in range(0, n, dblock):
            vals, idx = merge_topk(vals, idx, ql @ scan[d0:d0 + dblock].T, d0, kc)
        if xb_low is not None:  # exact fp32 similarities of the candidates, then the final order
            vals = torch.cat([torch.einsum("qd,qkd->qk", q[a:a + rescore_batch], xb[idx[a:a + rescore_batch]])
                              for a in range(0, len(q), rescore_batch)])
        v, j = vals.topk(k, dim=1)
        sims[q0:q0 + len(q)], rows[q0:q0 + len(q)] = v.cpu().numpy(), idx.gather(1, j).cpu().numpy()
    return sims, rows


def merge_topk(vals, idx, s: torch.Tensor, d0: int, kc: int):
    """The running top-kc (fp32 values [Q, kc], row indices; None at first) merged with the similarity block
    `s`, whose first column is row `d0`."""
    v, i = s.topk(min(kc, s.shape[1]), dim=1)
    v, i = v.float(), i + d0
    if vals is None:
        return v, i
    v, i = torch.cat([vals, v], 1), torch.cat([idx, i], 1)
    top, j = v.topk(min(kc, v.shape[1]), dim=1)
    return top, i.gather(1, j)
