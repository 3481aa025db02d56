"""Optimizers by name (OPTIMIZERS) with one param group per model part, and the per-step LR schedules (SCHEDULES):
pure functions of the optimizer step, so a resumed run gets the same rates."""
from __future__ import annotations

import functools
import math

import torch
from timm.optim import param_groups_layer_decay

from kit.errors import KitError
from kit.models.model import unwrap
from kit.registry import Registry

OPTIMIZERS = Registry("optimizer", {  # name -> (param groups, optim config) -> optimizer
    "sgd": lambda groups, o: torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay),
    "adamw": lambda groups, o: torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay),
})


def backbone_groups(backbone, optim_cfg) -> list[dict]:
    """Backbone param groups at lr x lr_backbone; layer_decay < 1: timm's per-block param_groups_layer_decay."""
    o = optim_cfg
    base = o.lr * o.lr_backbone
    params = list(backbone.parameters())
    if not params:
        return []
    if not 0 < o.layer_decay <= 1:
        raise KitError(f"optim.layer_decay={o.layer_decay} must be in (0, 1] (1 = off)")
    if o.layer_decay == 1:
        return [{"params": params, "lr": base, "name": "backbone"}]
    groups = param_groups_layer_decay(backbone, weight_decay=o.weight_decay, layer_decay=o.layer_decay)
    return [{"params": g["params"], "lr": base * g["lr_scale"], "weight_decay": g["weight_decay"],
             "name": "backbone"} for g in groups]


def cosine_factor(step: int, total_steps: int, warmup_steps: int = 0, floor: float = 0.0) -> float:
    """Linear warmup from ~0 to 1 over `warmup_steps`, then half a cosine down to `floor`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def step_factor(step: int, steps_per_epoch: int, step_size: int, gamma: float = 0.1,
                warmup_steps: int = 0) -> float:
    """x`gamma` every `step_size` epochs (report 001's step decay), after an optional linear warmup."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    epoch = step // max(1, steps_per_epoch)
    return gamma ** (epoch // max(1, step_size))


SCHEDULES = Registry("schedule", {  # name -> (step, steps_per_epoch, epochs, warmup steps, step_size, gamma) -> factor
    "cosine": lambda step, spe, epochs, warmup, step_size, gamma: cosine_factor(step, epochs * spe, warmup),
    "step": lambda step, spe, epochs, warmup, step_size, gamma: step_factor(step, spe, step_size, gamma, warmup),
})


def lr_factor(step: int, schedule: str, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0,
              step_size: int = 10, gamma: float = 0.1) -> float:
    """The lr multiplier at optimizer step `step` (0-based) for a schedule named in SCHEDULES."""
    warmup = int(round(warmup_epochs * steps_per_epoch))
    return SCHEDULES[SCHEDULES.check(schedule, "optim.schedule: ")](step, steps_per_epoch, epochs, warmup, step_size,
                                                                    gamma)


def build_optimizer(model, optim_cfg) -> torch.optim.Optimizer:
    """OPTIMIZERS[optim.optimizer] over per-part groups, lr = optim.lr x optim.lr_<part> (Mail.ru)."""
    o, model = optim_cfg, unwrap(model)
    OPTIMIZERS.check(o.optimizer, "optim.optimizer: ")
    parts = [{"params": ps, "lr": o.lr * getattr(o, f"lr_{name}"), "name": name}
             for name, ps in model.param_groups().items() if ps and name != "backbone"]
    return OPTIMIZERS[o.optimizer](backbone_groups(model.backbone, o) + parts, o)


def build_scheduler(optimizer, optim_cfg, steps_per_epoch: int, epochs: int):
    """Per-optimizer-step LambdaLR over lr_factor."""
    o = optim_cfg
    lr_factor(0, o.schedule, 1, 1)  # unknown schedule names fail here, before training starts
    fn = functools.partial(lr_factor, schedule=o.schedule, steps_per_epoch=steps_per_epoch, epochs=epochs,
                           warmup_epochs=o.warmup_epochs, step_size=o.step_size, gamma=o.step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
