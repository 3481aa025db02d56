"""Classification heads: linear, ArcFace, sub-center ArcFace; dynamic margins m_c = a * n_c^(-1/4) + b (GLR 2020)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kit.errors import KitError
from kit.registry import Registry


def dynamic_margins(class_counts, margin_min: float, margin_max: float) -> torch.Tensor:
    """Per-class margins a * n^(-1/4) + b scaled into [margin_min, margin_max] (rarest -> max)."""
    t = torch.as_tensor(class_counts, dtype=torch.float64).clamp(min=1).pow(-0.25)
    span = t.max() - t.min()
    if span <= 0:
        return torch.full_like(t, margin_max, dtype=torch.float32)
    return ((t - t.min()) / span * (margin_max - margin_min) + margin_min).float()


def cosine_logits(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every embedding with every weight row: [B, D] x [K, D] -> [B, K]."""
    return F.linear(F.normalize(embeddings.float()), F.normalize(weight.float()))


def arc_margin_logits(cosine: torch.Tensor, labels: torch.Tensor, margin, scale: float) -> torch.Tensor:
    """ArcFace logits: s * cos(theta + m) at the label, s * cos(theta) elsewhere (past pi: cos(theta) - m sin(m))."""
    m = torch.as_tensor(margin, dtype=cosine.dtype, device=cosine.device)
    m = m[labels] if m.ndim else m.expand(labels.shape)
    cos_t = cosine.gather(1, labels[:, None]).squeeze(1)
    sin_t = (1.0 - cos_t.pow(2)).clamp(min=0).sqrt()
    phi = cos_t * torch.cos(m) - sin_t * torch.sin(m)
    phi = torch.where(cos_t > torch.cos(math.pi - m), phi, cos_t - torch.sin(math.pi - m) * m)
    return cosine.scatter(1, labels[:, None], phi[:, None]) * scale


class LinearHead(nn.Module):
    """Plain fully connected classifier."""

    def __init__(self, in_features: int, num_classes: int, **_):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    @classmethod
    def from_config(cls, model_cfg, in_features: int, num_classes: int, class_counts=None) -> "LinearHead":
        return cls(in_features, num_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(embeddings)


class ArcFaceHead(nn.Module):
    """Additive angular margin head (Deng et al.); `subcenters` > 1: sub-center ArcFace (closest of k centers per class)."""

    config_subcenters = False   # from_config: k = model.subcenters

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0, margin=0.3, subcenters: int = 1):
        super().__init__()
        self.num_classes, self.subcenters, self.scale = num_classes, subcenters, scale
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, in_features))
        nn.init.xavier_uniform_(self.weight)
        margins = torch.as_tensor(margin, dtype=torch.float32)
        self.register_buffer("margins", margins if margins.ndim else margins.expand(num_classes).clone())

    @classmethod
    def from_config(cls, model_cfg, in_features: int, num_classes: int, class_counts=None) -> "ArcFaceHead":
        """scale, margin (per class with model.arc_dynamic) and, for sub-center heads, k from the config."""
        margin = model_cfg.arc_margin
        if model_cfg.arc_dynamic:
            if class_counts is None:
                raise KitError("model.arc_dynamic=true needs the class counts of the training fold")
            if len(class_counts) != num_classes:
                raise KitError(f"model.arc_dynamic: {len(class_counts)} class counts for {num_classes} classes")
            margin = dynamic_margins(class_counts, model_cfg.arc_margin_min, model_cfg.arc_margin)
        kw = {"subcenters": model_cfg.subcenters} if cls.config_subcenters else {}
        return cls(in_features, num_classes, scale=model_cfg.arc_scale, margin=margin, **kw)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[B, C] cosine to each class (max over sub-centers)."""
        cos = cosine_logits(embeddings, self.weight)
        if self.subcenters > 1:
            cos = cos.view(-1, self.num_classes, self.subcenters).amax(dim=2)
        return cos

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):  # margin maths in float32
            cos = self.cosine(embeddings)
            if labels is None:
                return cos * self.scale
            return arc_margin_logits(cos, labels, self.margins, self.scale)

    def extra_repr(self) -> str:
        m = self.margins
        return (f"classes={self.num_classes}, subcenters={self.subcenters}, scale={self.scale}, "
                f"margin=[{m.min():.3f}, {m.max():.3f}]")


class SubCenterArcFaceHead(ArcFaceHead):
    """Sub-center ArcFace (Deng et al. 2020): robust to noisy classes; k = cfg.subcenters."""

    config_subcenters = True

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0, margin=0.3, subcenters: int = 3):
        super().__init__(in_features, num_classes, scale=scale, margin=margin, subcenters=subcenters)


HEADS = Registry("head", {"linear": LinearHead, "arcface": ArcFaceHead, "subcenter_arcface": SubCenterArcFaceHead})


def build_head(model_cfg, in_features: int, num_classes: int, class_counts=None) -> nn.Module:
    """The head HEADS[model_cfg.head] builds from the config: a new head is one registry entry."""
    return HEADS[HEADS.check(model_cfg.head, "model.head: ")].from_config(model_cfg, in_features, num_classes,
                                                                          class_counts)
