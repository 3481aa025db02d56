"""The landmark model: backbone -> [SE attention] -> pool -> [FC -> BN neck] -> head -> {"embeddings", "pooled", "logits"}."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kit.models.backbones import create_backbone
from kit.errors import KitError
from kit.models.heads import build_head
from kit.models.layers import SEAttention, build_pool
from kit.models.losses import num_centers

STAGES = ("head", "last", "all")


class Neck(nn.Module):
    """[dropout] -> FC -> BN embedding (Mail.ru: 512-d); embedding_dim 0 keeps the pooled features."""

    def __init__(self, in_features: int, embedding_dim: int, drop_rate: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, embedding_dim) if embedding_dim > 0 else nn.Identity()
        self.bn = nn.BatchNorm1d(embedding_dim) if embedding_dim > 0 else nn.Identity()
        self.out_features = embedding_dim or in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(self.dropout(x))
        if self.training and len(x) == 1 and isinstance(self.bn, nn.BatchNorm1d):
            # a lone sample has no batch statistics (a ragged last batch): use the running ones
            bn = self.bn
            return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return self.bn(x)


class LandmarkModel(nn.Module):
    def __init__(self, backbone: nn.Module, pool: nn.Module, neck: Neck, head: nn.Module,
                 attention: nn.Module | None = None, centers: int = 0):
        super().__init__()
        self.backbone, self.pool, self.neck, self.head = backbone, pool, neck, head
        self.attention = attention or nn.Identity()
        self.centers = nn.Parameter(torch.randn(centers, neck.out_features) * 0.01) if centers else None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone feature map [B, C, H, W] (after the optional attention block)."""
        return self.attention(self.backbone(images))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        pooled = self.pool(self.features(images))
        emb = self.neck(pooled)
        out = {"embeddings": emb, "pooled": pooled, "logits": self.head(emb, labels)}
        if self.centers is not None:
            out["centers"] = self.centers
        return out

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by part for per-part lrs: backbone (pretrained), neck (attention, pool, FC, BN), head (+ centers)."""
        neck = [*self.attention.parameters(), *self.pool.parameters(), *self.neck.parameters()]
        head = [*self.head.parameters()] + ([self.centers] if self.centers is not None else [])
        return {"backbone": list(self.backbone.parameters()), "neck": neck, "head": head}

    def train(self, mode: bool = True):
        """nn.Module.train, but BatchNorms with frozen weights stay in eval mode (their running stats must not drift)."""
        super().train(mode)
        if mode:
            for m in self.backbone.modules():
                frozen = getattr(m, "weight", None) is not None and not m.weight.requires_grad
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and frozen:
                    m.eval()
        return self


def build_model(model_cfg, num_classes: int, class_counts=None) -> LandmarkModel:
    """Model from a ModelConfig (kit.config): backbone, pool, neck and head by name."""
    backbone = create_backbone(model_cfg.backbone, model_cfg.weights)
    channels = backbone.num_features
    attention = SEAttention(channels) if model_cfg.se_attention else None
    pool = build_pool(model_cfg.pool, model_cfg.gem_p)
    neck = Neck(channels, model_cfg.embedding_dim, model_cfg.drop_rate)
    head = build_head(model_cfg, neck.out_features, num_classes, class_counts)
    centers = num_centers(num_classes, model_cfg.nonlandmark_label) if model_cfg.center_weight > 0 else 0
    return LandmarkModel(backbone, pool, neck, head, attention, centers)


def last_block_names(backbone: nn.Module) -> list[str]:
    """Backbone parameters of its last two reduction stages (timm feature_info; report 001's stage 3), else the last half."""
    names = [n for n, _ in backbone.named_parameters()]
    info = getattr(backbone, "feature_info", None)
    modules = [f["module"] for f in info] if info else []
    if len(modules) >= 3:
        prefix = modules[-3] + "."
        hits = [i for i, n in enumerate(names) if n.startswith(prefix)]
        if hits:
            return names[hits[-1] + 1:]
    return names[len(names) // 2:]


def set_trainable(model: LandmarkModel, stage: str) -> LandmarkModel:
    """Report 001's stage fine-tuning: "head" (neck + head only), "last" (+ last two backbone stages), "all"."""
    if stage not in STAGES:
        raise KitError(f"optim.stages: unknown stage '{stage}' (valid: {', '.join(STAGES)})")
    last = set(last_block_names(model.backbone)) if stage == "last" else set()
    for name, p in model.backbone.named_parameters():
        p.requires_grad_(stage == "all" or name in last)
    for group in ("neck", "head"):
        for p in model.param_groups()[group]:
            p.requires_grad_(True)
    model.train(model.training)  # re-apply the frozen-BatchNorm rule
    return model


def parse_stages(spec: str) -> list[tuple[str, int]]:
    """'head:1,last:2,all:7' -> [('head', 1), ('last', 2), ('all', 7)] (optim.stages); '' -> []."""
    out = []
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        stage, _, epochs = item.partition(":")
        if stage not in STAGES or not epochs.isdigit():
            raise KitError(f"optim.stages: '{item}' is not STAGE:EPOCHS with STAGE in {', '.join(STAGES)}")
        out.append((stage, int(epochs)))
    return out


def stage_at(spec: str, epoch: int) -> str:
    """Stage for 0-based `epoch` under optim.stages `spec`; "all" when unset or past the listed epochs."""
    end = 0
    for stage, epochs in parse_stages(spec):
        end += epochs
        if epoch < end:
            return stage
    return "all"


def unwrap(model):
    """The bare model inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
