"""Under torchrun, the DDP process group; the collective helpers are no-ops in a single process."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as td
from torch.nn.parallel import DistributedDataParallel

from kit.device import choose_device


@dataclass
class Dist:
    """Where this process runs: rank/world size of a DDP job (0/1 when alone) and its device."""
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False   # we called init_process_group, so we tear it down

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(pref: str = "auto") -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = choose_device(pref, int(os.environ.get("LOCAL_RANK", "0")))
    if world <= 1:
        return Dist(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = not td.is_initialized()
    if owns:
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(td.get_rank(), td.get_world_size(), device, owns)


def barrier(dist: Dist) -> None:
    if dist.enabled:
        td.barrier()


def all_gather(obj, dist: Dist) -> list:
    """Every rank's `obj` (a list of one item when alone)."""
    if not dist.enabled:
        return [obj]
    out = [None] * dist.world
    td.all_gather_object(out, obj)
    return out


def wrap_ddp(model, dist: Dist):
    """DDP wrapper over the currently trainable parameters (rebuilt when the stage changes)."""
    if not dist.enabled:
        return model
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
