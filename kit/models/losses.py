"""Losses by name: `loss(outputs, labels) -> scalar` over the model's output dict."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kit.errors import KitError
from kit.registry import Registry


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean of -(1 - p_y)^gamma * log p_y (Lin et al.); gamma = 0 is cross-entropy."""
    logp = F.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    # 1 - p via expm1 (exact near p = 1), clamped: for gamma < 1 the gradient of (1-p)^gamma is infinite at p = 1
    one_minus_p = (-torch.expm1(logp)).clamp_min(1e-6)
    return (-one_minus_p.pow(gamma) * logp).mean()


def center_index(labels: torch.Tensor, nonlandmark_label: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of samples with a center, their center row): the non-landmark class has none, later classes shift down."""
    if nonlandmark_label < 0:
        return torch.ones_like(labels, dtype=torch.bool), labels
    keep = labels != nonlandmark_label
    return keep, labels - (labels > nonlandmark_label).long()


def center_loss(embeddings: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor,
                nonlandmark_label: int = -1) -> torch.Tensor:
    """Mail.ru's center loss: 1/2 * sum over landmark samples of ||x_i - c_{y_i}||^2 / batch size."""
    keep, idx = center_index(labels, nonlandmark_label)
    diff = embeddings.float()[keep] - centers.float()[idx[keep]]
    return 0.5 * diff.pow(2).sum() / max(len(labels), 1)


def num_centers(num_classes: int, nonlandmark_label: int = -1) -> int:
    """Rows of the centers matrix: one per landmark class."""
    return num_classes - 1 if 0 <= nonlandmark_label < num_classes else num_classes


class CrossEntropyLoss(nn.Module):
    """Softmax CE of outputs["logits"] (float32), label smoothing; subclasses swap `loss` and `options` (kw -> field)."""

    loss = staticmethod(F.cross_entropy)
    options = {"label_smoothing": "label_smoothing"}

    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    @classmethod
    def from_config(cls, model_cfg) -> "CrossEntropyLoss":
        return cls(**{k: getattr(model_cfg, field) for k, field in cls.options.items()})

    def forward(self, outputs: dict, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs["logits"].float(), labels, **self.kw)


class FocalLoss(CrossEntropyLoss):
    """Focal loss; report 001 compares gamma 0.5 and 2.0 against cross-entropy."""

    loss = staticmethod(focal_loss)
    options = {"gamma": "focal_gamma"}


class WithCenterLoss(nn.Module):
    """`base` loss + weight * center loss on outputs["embeddings"] and outputs["centers"]."""

    def __init__(self, base: nn.Module, weight: float, nonlandmark_label: int = -1):
        super().__init__()
        self.base, self.weight, self.nonlandmark_label = base, weight, nonlandmark_label

    def forward(self, outputs: dict, labels: torch.Tensor) -> torch.Tensor:
        if "centers" not in outputs:
            raise KitError("model.center_weight > 0 but the model has no centers (build it with the same config)")
        extra = center_loss(outputs["embeddings"], labels, outputs["centers"], self.nonlandmark_label)
        return self.base(outputs, labels) + self.weight * extra


LOSSES = Registry("loss", {"ce": CrossEntropyLoss, "focal": FocalLoss})


def build_loss(model_cfg, num_classes: int, class_counts=None) -> nn.Module:
    """Loss named by model_cfg.loss, plus center loss when model_cfg.center_weight > 0."""
    loss = LOSSES[LOSSES.check(model_cfg.loss, "model.loss: ")].from_config(model_cfg)
    if model_cfg.center_weight > 0:
        nl = model_cfg.nonlandmark_label
        if nl >= num_classes:
            raise KitError(f"model.nonlandmark_label={nl} is not a label (0..{num_classes - 1})")
        loss = WithCenterLoss(loss, model_cfg.center_weight, nl)
    return loss
