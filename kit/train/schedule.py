"""Learning-rate schedules as pure functions of the optimizer step, so a resumed run gets the same rates."""
from __future__ import annotations

import math

from kit.registry import Registry


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
    SCHEDULES.check(schedule, "optim.schedule: ")
    warmup = int(round(warmup_epochs * steps_per_epoch))
    return SCHEDULES[schedule](step, steps_per_epoch, epochs, warmup, step_size, gamma)
