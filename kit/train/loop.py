"""`kit train`: fit one model on one fold (DDP under torchrun), keep the best, write OOF; resume reproduces the run."""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kit.config import config_to_dict, save_config
from kit.data.dataset import LandmarkDataset, make_loader, make_loaders, set_epoch, split_fold
from kit.errors import KitError
from kit.inference.engine import predict_loader
from kit.models.checkpoint import load_checkpoint, save_checkpoint
from kit.models.losses import build_loss
from kit.models.model import build_model, set_trainable, stage_at, unwrap
from kit.predictions import save_predictions
from kit.train.distributed import Dist, all_gather, barrier, setup_distributed, wrap_ddp
from kit.train.epoch import evaluate, micro_batches, train_one_epoch
from kit.train.log import TrainLog
from kit.train.optim import build_optimizer, build_scheduler

log = logging.getLogger("kit.train.loop")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (last.pt carries their states: `--resume` continues the same streams)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """RNG states as tensors and plain containers, so last.pt loads with torch.load(weights_only=True)."""
    np_state = np.random.get_state(legacy=False)
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {**np_state, "state": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                                             "pos": int(np_state["state"]["pos"])}}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    if isinstance(np_state, dict):  # kit's tensor form (see rng_state)
        key = np.asarray(np_state["state"]["key"]).astype(np.uint32)
        np_state = {**np_state, "state": {"key": key, "pos": int(np_state["state"]["pos"])}}
    np.random.set_state(np_state)
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_state(model, cfg, split, epoch: int, metrics: dict) -> dict:
    """The part of a checkpoint that `load_model` needs (best.pt; last.pt adds the resume state)."""
    return {"model": unwrap(model).state_dict(), "config": config_to_dict(cfg),
            "label_map": list(split.label_map), "class_counts": list(split.class_counts), "epoch": epoch,
            "metrics": dict(metrics)}


def write_oof(model, cfg, fold: int, split, dist: Dist, amp: bool):
    """Predictions of `model` (the best checkpoint) on the fold's val rows -> predictions/<name>/oof_foldN.npz."""
    loader = make_loader(LandmarkDataset.from_config(split.val, cfg, train=False), cfg.predict.batch_size, False,
                         cfg.seed, cfg.data.num_workers, dist.device.type)
    pred = predict_loader(unwrap(model), loader, split.label_map, cfg.predict.topk, dist.device, amp=amp,
                          desc="oof")
    return save_predictions(pred, Path(cfg.predictions_dir) / cfg.name / f"oof_fold{fold}.npz")


@dataclass
class Job:
    """What `fit` trains: `build(split)` -> (model, loss), each epoch's stage, `run_dir`, and whether to write OOF."""

    build: Callable
    stages: list[str]
    run_dir: Path
    set_stage: Callable = lambda model, stage: model
    oof: bool = False


@dataclass
class _Parts:
    """A training run's moving parts, as `fit` assembles them."""

    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    steps_per_epoch: int


def train(cfg, fold: int, resume: bool = False) -> dict:
    """Train cfg's model on fold `fold`; returns the best epoch's metrics and the output paths."""
    o = cfg.optim  # stage_at parses optim.stages first: a bad spec fails before any work
    job = Job(lambda split: (build_model(cfg.model, len(split.label_map), split.class_counts),
                             build_loss(cfg.model, len(split.label_map), split.class_counts)),
              [stage_at(o.stages, e) for e in range(o.epochs)], cfg.run_dir(fold), set_trainable, oof=True)
    return fit(cfg, fold, job, resume)


def fit(cfg, fold: int, job: Job, resume: bool = False) -> dict:
    """Train `job` on `fold`: best epoch in best.pt, resume state in last.pt -> best metrics and output paths."""
    dist = setup_distributed(cfg.device)
    try:
        return _fit(cfg, fold, job, resume, dist)
    finally:
        if dist.owns_group:
            torch.distributed.destroy_process_group()


def _assemble(cfg, job: Job, split, n_batches: int, device, channels_last: bool, amp: bool) -> _Parts:
    """Model, loss, optimizer, per-step scheduler and grad scaler, with identical initial weights on every rank."""
    o = cfg.optim
    seed_everything(cfg.seed)
    model, loss_fn = (m.to(device) for m in job.build(split))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, o)
    steps_per_epoch = math.ceil(micro_batches(n_batches, o) / max(1, o.accum_steps))
    scheduler = build_scheduler(optimizer, o, steps_per_epoch, len(job.stages))
    return _Parts(model, loss_fn, optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=amp),
                  steps_per_epoch)


def _resume(run: _Parts, run_dir: Path, dist: Dist) -> tuple[int, dict, list]:
    """Restore last.pt into `run`; (first epoch to run, best row, history)."""
    state = load_checkpoint(run_dir, "last.pt")  # on CPU: RNG states must stay CPU tensors
    unwrap(run.model).load_state_dict(state["model"])
    for key in ("optimizer", "scheduler", "scaler"):
        getattr(run, key).load_state_dict(state[key])
    rngs = state["rng"]
    set_rng_state(rngs[dist.rank] if dist.rank < len(rngs) else rngs[0])
    log.info("resuming %s from epoch %d", run_dir, state["epoch"] + 2)
    return state["epoch"] + 1, state["best"], state["history"]


def _epoch(run: _Parts, loaders, split, epoch: int, stage: str, wrapped, o, dist: Dist, amp: bool,
           channels_last: bool, n_epochs: int) -> dict:
    """One epoch trained (through `wrapped`, the DDP view) and evaluated: its metrics row."""
    set_epoch(loaders.train, epoch)
    t0 = time.perf_counter()
    tr = train_one_epoch(wrapped, loaders.train, run.loss_fn, run.optimizer, run.scheduler, run.scaler, o, dist, amp,
                         channels_last, desc=f"epoch {epoch + 1}/{n_epochs} [{stage}]")
    seconds = time.perf_counter() - t0
    va = evaluate(run.model, loaders.val, run.loss_fn, split.label_map, dist, amp, channels_last)
    if tr["unreadable"] + va["val_unreadable"] and dist.main:
        log.warning("epoch %d: skipped %d training + %d validation image(s): undecodable, truncated or "
                    "oversized", epoch + 1, tr["unreadable"], va["val_unreadable"])
    row = {"epoch": epoch + 1, "stage": stage, "lr": run.optimizer.param_groups[0]["lr"], **tr, **va,
           "seconds": round(seconds, 3), "images_per_s": round(tr["images"] / max(seconds, 1e-9), 2)}
    log.info("epoch %d/%d [%s] train_loss %.4f val_loss %.4f val_acc %.4f val_gap %.4f (%.0f img/s)",
             epoch + 1, n_epochs, stage, row["train_loss"], row["val_loss"], row["val_acc"], row["val_gap"],
             row["images_per_s"])
    return row


def _save(run: _Parts, cfg, split, run_dir: Path, epoch: int, row: dict, best: dict, tlog, rngs) -> dict:
    """best.pt when `row` beats `best`, and last.pt; returns the best row."""
    base = checkpoint_state(run.model, cfg, split, epoch, row)
    if row["val_gap"] > best["val_gap"]:
        best = dict(row)
        save_checkpoint(base, run_dir / "best.pt")
    save_checkpoint({**base, "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                     "scaler": run.scaler.state_dict(), "rng": rngs, "best": best, "history": tlog.rows,
                     "global_step": (epoch + 1) * run.steps_per_epoch, "sampler_epoch": epoch}, run_dir / "last.pt")
    return best


def _fit(cfg, fold: int, job: Job, resume: bool, dist: Dist) -> dict:
    device, o, run_dir = dist.device, cfg.optim, job.run_dir
    amp = bool(o.amp and device.type == "cuda")
    channels_last = bool(o.channels_last and device.type == "cuda")
    split = split_fold(cfg, fold)
    loaders = make_loaders(cfg, fold, dist.world, dist.rank, device.type, split)
    if micro_batches(len(loaders.train), o) == 0:
        raise KitError(f"fold {fold}: {len(split.train)} training images are fewer than one batch "
                       f"(data.batch_size={cfg.data.batch_size})")
    run = _assemble(cfg, job, split, len(loaders.train), device, channels_last, amp)
    seed_everything(cfg.seed + 1 + dist.rank)  # dropout etc. differ per rank
    start_epoch, best, history = _resume(run, run_dir, dist) if resume else (0, {"val_gap": -1.0, "epoch": -1}, [])
    if dist.main:
        save_config(cfg, run_dir / "config.yaml")
    tlog, unreadable = TrainLog(run_dir, history, enabled=dist.main), 0
    wrapped, wrapped_stage = None, None
    try:
        for epoch in range(start_epoch, len(job.stages)):
            stage = job.stages[epoch]
            run.model.train()
            job.set_stage(unwrap(run.model), stage)
            if wrapped is None or stage != wrapped_stage:
                wrapped, wrapped_stage = wrap_ddp(run.model, dist), stage
            row = _epoch(run, loaders, split, epoch, stage, wrapped, o, dist, amp, channels_last, len(job.stages))
            unreadable = max(unreadable, row["unreadable"] + row["val_unreadable"])
            rngs = all_gather(rng_state(), dist)
            if dist.main:
                tlog.add(row)
                best = _save(run, cfg, split, run_dir, epoch, row, best, tlog, rngs)
            else:
                best = row if row["val_gap"] > best["val_gap"] else best
            barrier(dist)
    finally:
        tlog.close()
    result = {"fold": fold, "run_dir": str(run_dir), "best": best, "epochs": len(job.stages),
              "skipped_missing": split.missing, "skipped_unreadable": unreadable}
    if dist.main and job.oof:
        unwrap(run.model).load_state_dict(load_checkpoint(run_dir, "best.pt")["model"])
        result["oof"] = str(write_oof(run.model, cfg, fold, split, dist, amp))
        log.info("best val_gap %.4f at epoch %d; OOF predictions -> %s", best["val_gap"], best["epoch"],
                 result["oof"])
    barrier(dist)
    return result
