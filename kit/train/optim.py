"""Optimizers by name (OPTIMIZERS) with one param group per model part, and the per-step LR scheduler."""
from __future__ import annotations

import functools

import torch

from kit.errors import KitError
from kit.models.model import unwrap
from kit.train.schedule import lr_factor

OPTIMIZERS = {  # name -> (param groups, optim config) -> optimizer
    "sgd": lambda groups, o: torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay),
    "adamw": lambda groups, o: torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay),
}


def build_optimizer(model, optim_cfg) -> torch.optim.Optimizer:
    """SGD or AdamW with one param group per model part, lr = optim.lr x optim.lr_<part> (Mail.ru)."""
    o = optim_cfg
    mult = {"backbone": o.lr_backbone, "neck": o.lr_neck, "head": o.lr_head}
    parts = unwrap(model).param_groups()
    groups = [{"params": list(ps), "lr": o.lr * mult[name], "name": name} for name, ps in parts.items() if ps]
    if o.optimizer not in OPTIMIZERS:
        raise KitError(f"optim.optimizer: unknown optimizer '{o.optimizer}' (valid: {', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[o.optimizer](groups, o)


def build_scheduler(optimizer, optim_cfg, steps_per_epoch: int, epochs: int):
    """Per-optimizer-step LambdaLR over kit.train.schedule.lr_factor."""
    o = optim_cfg
    lr_factor(0, o.schedule, 1, 1)  # unknown schedule names fail here, before training starts
    fn = functools.partial(lr_factor, schedule=o.schedule, steps_per_epoch=steps_per_epoch, epochs=epochs,
                           warmup_epochs=o.warmup_epochs, step_size=o.step_size, gamma=o.step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
