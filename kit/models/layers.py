"""Pooling and attention layers: pure tensor functions wrapped by thin modules (cirtorch style)."""
from __future__ import annotations

import torch
from timm.layers import SEModule
from torch import nn

from kit.registry import Registry


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """GeM pooling [B, C, H, W] -> [B, C]: (mean(x^p))^(1/p), in float32 (x^p overflows float16 under autocast)."""
    x = x.float().clamp(min=eps).pow(p)
    return x.mean(dim=(-2, -1)).pow(1.0 / p)


class GeM(nn.Module):
    """GeM pooling with a learnable exponent p (Radenovic et al., cirtorch)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p, requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4f}, eps={self.eps}"


class AvgPool(nn.Module):
    """Global average pooling [B, C, H, W] -> [B, C] (float32, like GeM)."""

    reduce = "mean"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(x.float(), self.reduce)(dim=(-2, -1))


class MaxPool(AvgPool):
    """Global max pooling [B, C, H, W] -> [B, C] (float32, like GeM)."""

    reduce = "amax"


POOLS = Registry("pool", {"gem": GeM, "avg": AvgPool, "max": MaxPool})


def build_pool(name: str, gem_p: float = 3.0) -> nn.Module:
    """Pooling layer by name (POOLS); `gem_p` is GeM's initial p."""
    pool = POOLS[POOLS.check(name, "model.pool: ")]
    return pool(p=gem_p) if pool is GeM else pool()


class SEAttention(nn.Module):
    """Report 001's SE-attention with attention-residual learning: y = x * (1 + gate(x)), starts near identity."""

    def __init__(self, channels: int, rd_ratio: float = 1 / 16):
        super().__init__()
        self.se = SEModule(channels, rd_ratio=rd_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se(x)
