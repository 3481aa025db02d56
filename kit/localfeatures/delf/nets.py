"""DELF's networks: an attention head on a mid-level (default stride-16) feature map of a frozen backbone, trained
by classifying the attention-weighted mean of the features, so locations that identify the landmark score high."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kit.errors import KitError


class DelfAttention(nn.Module):
    """Attention scores [B, 1, h, w] >= 0: 1x1 conv -> BN -> ReLU -> 1x1 conv -> softplus."""

    def __init__(self, in_channels: int, hidden: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 1)
        self.bn = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, 1, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.conv2(F.relu(self.bn(self.conv1(f)))))


def attention_pool(features: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """[B, C]: mean over locations of score * L2-normalised feature (the DELF training signal)."""
    return (F.normalize(features, dim=1) * scores).mean(dim=(2, 3))


class DelfHead(nn.Module):
    """Attention + a linear classifier on the attention-pooled features (the classifier only trains)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 512):
        super().__init__()
        self.attention = DelfAttention(in_channels, hidden)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> dict:
        scores = self.attention(features)
        return {"scores": scores, "logits": self.classifier(attention_pool(features, scores))}


class DelfModel(nn.Module):
    """A frozen backbone (kept in eval mode) and a DelfHead on its stride-`stride` stage: what kit.train.loop
    trains (`forward(images, labels)` -> {"logits", "scores"}; only the head has trainable parameters)."""

    def __init__(self, backbone: nn.Module, num_classes: int, hidden: int = 512, stride: int = 16):
        super().__init__()
        self.backbone, self.stride = freeze(backbone), stride
        self.index = stage_index(backbone, stride)
        self.head = DelfHead(int(backbone.feature_info[self.index]["num_chs"]), num_classes, hidden)

    def train(self, mode: bool = True) -> "DelfModel":
        super().train(mode)
        self.backbone.eval()  # frozen BatchNorm statistics
        return self

    def param_groups(self) -> dict:
        return {"backbone": [], "head": list(self.head.parameters())}

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        with torch.no_grad():
            features = stage_features(self.backbone, images, self.index)
        return self.head(features)


def stage_index(backbone: nn.Module, stride: int) -> int:
    """Index of the timm feature stage with reduction `stride` (KitError listing the ones there are)."""
    reductions = [int(f["reduction"]) for f in backbone.feature_info]
    if stride not in reductions:
        raise KitError(f"delf: backbone has no stride-{stride} stage (strides: {reductions})")
    return reductions.index(stride)


def stage_features(backbone: nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
    """Feature map of stage `index`, stopping the forward pass there (timm forward_intermediates)."""
    return backbone.forward_intermediates(x, indices=[index], intermediates_only=True, stop_early=True)[0]


def freeze(module: nn.Module) -> nn.Module:
    """`module` in eval mode with no trainable parameters."""
    return module.eval().requires_grad_(False)
