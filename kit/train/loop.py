"""`kit train`: fit one model on one fold, evaluate every epoch, keep the best, write OOF predictions.

One loop for CPU and CUDA (AMP and channels_last only on CUDA), single process or DDP under
torchrun (gloo on CPU, NCCL on CUDA; cfg.data.batch_size is the GLOBAL batch, split over ranks;
only rank 0 writes). The data order and augmentation are functions of (seed, epoch) and
last.pt holds every other piece of state (weights, optimizer, scheduler, scaler, RNGs, history), so
`--resume` after a kill reproduces the uninterrupted run.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import time

import numpy as np
import torch

from kit.data.dataset import has_images
from kit.models.checkpoint import load_checkpoint, save_checkpoint
from kit.models.model import unwrap
from kit.config import config_to_dict, save_config
from kit.train.distributed import Dist, all_gather, barrier, setup_distributed, wrap_ddp
from kit.errors import KitError
from kit.train.optim import build_optimizer, build_scheduler

log = logging.getLogger("kit.train.loop")


def seed_everything(seed: int) -> None:
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
        key = np.asarray(np_state["state"]["key"].numpy() if torch.is_tensor(np_state["state"]["key"])
                         else np_state["state"]["key"]).astype(np.uint32)
        np_state = {**np_state, "state": {"key": key, "pos": int(np_state["state"]["pos"])}}
    np.random.set_state(np_state)
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def micro_batches(n_batches: int, optim_cfg) -> int:
    """Loader batches used per epoch: all, or max_steps_per_epoch optimizer steps' worth."""
    if optim_cfg.max_steps_per_epoch > 0:
        return min(n_batches, optim_cfg.max_steps_per_epoch * optim_cfg.accum_steps)
    return n_batches


def to_device(batch, device, channels_last: bool):
    images = batch["image"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, batch["label"].to(device, non_blocking=True)


def train_one_epoch(model, loader, loss_fn, optimizer, scheduler, scaler, optim_cfg, dist: Dist,
                    amp: bool, channels_last: bool, desc: str = "train") -> dict:
    """One pass over the (capped) loader with gradient accumulation; returns mean loss and counts."""
    from kit.progress import progress

    device = dist.device
    n_micro = micro_batches(len(loader), optim_cfg)
    accum = max(1, optim_cfg.accum_steps)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    loss_sum = torch.zeros((), device=device)
    seen = steps = skipped = 0
    optimizer.zero_grad(set_to_none=True)
    bar = progress(total=n_micro, desc=desc, disable=not dist.main, leave=False, mininterval=1.0)
    for i, batch in enumerate(loader):
        if i >= n_micro:
            break
        bar.update(1)
        group_start = i - i % accum
        group = min(accum, n_micro - group_start)
        last_in_group = (i - group_start) == group - 1
        skipped += len(batch["skipped"]) if batch is not None else 0
        if not has_images(batch):  # every image of the batch was unreadable
            if dist.enabled:  # the other ranks would wait forever in backward's all-reduce
                raise KitError("a whole batch of unreadable images under DDP: run with --strict to list them")
            continue
        images, labels = to_device(batch, device, channels_last)
        sync = model.no_sync() if dist.enabled and not last_in_group else contextlib.nullcontext()
        with sync:
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                out = model(images, labels)
                loss = loss_fn(out, labels)
            scaler.scale(loss / group).backward()
        loss_sum += loss.detach().float() * len(labels)
        seen += len(labels)
        if last_in_group:
            if optim_cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, optim_cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            if steps % 10 == 0:  # loss_sum.item() syncs anyway for the progress bar
                mean = loss_sum.item() / max(1, seen)
                if not math.isfinite(mean):
                    raise KitError(f"training loss became {mean} after {steps} steps: lower optim.lr, "
                                   "set optim.grad_clip or optim.warmup_epochs")
                if dist.main:
                    bar.set_postfix(loss=f"{mean:.4f}")
    bar.close()
    totals = torch.tensor([loss_sum.item(), float(seen), float(skipped)], dtype=torch.float64)
    if dist.enabled:
        totals = totals.to(device)
        torch.distributed.all_reduce(totals)
    return {"train_loss": float(totals[0] / max(1.0, float(totals[1]))), "images": int(totals[1]), "steps": steps,
            "unreadable": int(totals[2])}


@torch.inference_mode()
def evaluate(model, loader, loss_fn, label_map, dist: Dist, amp: bool, channels_last: bool) -> dict:
    """Val loss, top-1 accuracy and GAP over the whole val set (shards gathered from all ranks).

    The loss is computed on the inference-time outputs (no labels given to the head, so no margin).
    """
    from kit.progress import progress

    from kit.metrics import gap

    model.eval()
    lm = np.asarray(label_map, dtype=np.int64)
    preds, scores, trues, ids, loss_sum, skipped = [], [], [], [], 0.0, 0
    for batch in progress(loader, desc="val", disable=not dist.main, leave=False, mininterval=1.0):
        skipped += len(batch["skipped"]) if batch is not None else 0
        if not has_images(batch):
            continue
        images, labels = to_device(batch, dist.device, channels_last)
        with torch.autocast(device_type=dist.device.type, dtype=torch.float16, enabled=amp):
            out = model(images)
            loss = loss_fn(out, labels)
        loss_sum += float(loss) * len(labels)
        conf, top = torch.softmax(out["logits"].float(), dim=1).max(dim=1)
        preds.append(lm[top.cpu().numpy()])
        scores.append(conf.cpu().numpy())
        trues.append(lm[labels.cpu().numpy()])
        ids += [str(i) for i in batch["id"]]
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    shard = (cat(preds, np.int64), cat(scores, np.float32), cat(trues, np.int64), np.array(ids, str), loss_sum,
             skipped)
    parts = all_gather(shard, dist)
    p, s, t, i = (np.concatenate([x[k] for x in parts]) for k in range(4))
    unreadable = sum(x[5] for x in parts)
    if not len(t):
        return {"val_loss": float("nan"), "val_acc": 0.0, "val_gap": 0.0, "val_unreadable": unreadable}
    return {"val_loss": sum(x[4] for x in parts) / len(t), "val_acc": float((p == t).mean()),
            # ids break score ties: the same GAP however rows are sharded
            "val_gap": float(gap(p, s, t, ids=i)), "val_unreadable": unreadable}


def checkpoint_state(model, cfg, split, epoch: int, metrics: dict) -> dict:
    """The part of a checkpoint that `load_model` needs (best.pt; last.pt adds the resume state)."""
    return {"model": unwrap(model).state_dict(), "config": config_to_dict(cfg),
            "label_map": list(split.label_map), "class_counts": list(split.class_counts), "epoch": epoch,
            "metrics": dict(metrics)}


def write_oof(model, cfg, fold: int, split, dist: Dist, amp: bool):
    """Predictions of `model` (the best checkpoint) on the fold's val rows -> predictions/<name>/oof_foldN.npz."""
    from pathlib import Path

    from kit.data.dataset import LandmarkDataset, make_loader
    from kit.inference.engine import predict_loader
    from kit.predictions import save_predictions

    ds = LandmarkDataset.from_config(split.val, cfg, train=False)
    loader = make_loader(ds, cfg.predict.batch_size, False, cfg.seed, cfg.data.num_workers, dist.device.type)
    pred = predict_loader(unwrap(model), loader, split.label_map, cfg.predict.topk, dist.device, amp=amp,
                          desc="oof")
    return save_predictions(pred, Path(cfg.predictions_dir) / cfg.name / f"oof_fold{fold}.npz")


def train(cfg, fold: int, resume: bool = False) -> dict:
    """Train cfg's model on fold `fold`; returns the best epoch's metrics and the output paths."""
    dist = setup_distributed(cfg.device)
    try:
        return _train(cfg, fold, resume, dist)
    finally:
        if dist.owns_group:
            torch.distributed.destroy_process_group()


def _train(cfg, fold: int, resume: bool, dist: Dist) -> dict:
    from kit.data.dataset import make_loaders, set_epoch, split_fold
    from kit.models.losses import build_loss
    from kit.models.model import build_model, parse_stages, set_trainable, stage_at
    from kit.train.log import TrainLog

    run_dir = cfg.run_dir(fold)
    device, o = dist.device, cfg.optim
    amp = bool(o.amp and device.type == "cuda")
    channels_last = bool(o.channels_last and device.type == "cuda")
    parse_stages(o.stages)  # bad stage specs fail before any work
    plan = [stage_at(o.stages, e) for e in range(o.epochs)]  # report 001's stages, then "all"
    split = split_fold(cfg, fold)
    loaders = make_loaders(cfg, fold, dist.world, dist.rank, device.type, split)
    if micro_batches(len(loaders.train), o) == 0:
        raise KitError(f"fold {fold}: {len(split.train)} training images are fewer than one batch "
                       f"(data.batch_size={cfg.data.batch_size})")
    num_classes = len(split.label_map)

    seed_everything(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg.model, num_classes, split.class_counts).to(device)
    loss_fn = build_loss(cfg.model, num_classes, split.class_counts).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, o)
    steps_per_epoch = math.ceil(micro_batches(len(loaders.train), o) / max(1, o.accum_steps))
    scheduler = build_scheduler(optimizer, o, steps_per_epoch, len(plan))
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    seed_everything(cfg.seed + 1 + dist.rank)  # dropout etc. differ per rank

    start_epoch, best, history, unreadable = 0, {"val_gap": -1.0, "epoch": -1}, [], 0
    if resume:
        state = load_checkpoint(run_dir, "last.pt")  # on CPU: RNG states must stay CPU tensors
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        rngs = state["rng"]
        set_rng_state(rngs[dist.rank] if dist.rank < len(rngs) else rngs[0])
        log.info("resuming %s from epoch %d", run_dir, start_epoch + 1)
    if dist.main:
        save_config(cfg, run_dir / "config.yaml")

    tlog = TrainLog(run_dir, history, enabled=dist.main)
    wrapped, wrapped_stage = None, None
    try:
        for epoch in range(start_epoch, len(plan)):
            stage = plan[epoch]
            model.train()
            set_trainable(unwrap(model), stage)
            if wrapped is None or stage != wrapped_stage:
                wrapped, wrapped_stage = wrap_ddp(model, dist), stage
            set_epoch(loaders.train, epoch)
            t0 = time.perf_counter()
            tr = train_one_epoch(wrapped, loaders.train, loss_fn, optimizer, scheduler, scaler, o, dist, amp,
                                 channels_last, desc=f"epoch {epoch + 1}/{len(plan)} [{stage}]")
            seconds = time.perf_counter() - t0
            va = evaluate(model, loaders.val, loss_fn, split.label_map, dist, amp, channels_last)
            unreadable = max(unreadable, tr["unreadable"] + va["val_unreadable"])
            if tr["unreadable"] + va["val_unreadable"] and dist.main:
                log.warning("epoch %d: skipped %d training + %d validation image(s): undecodable, truncated or "
                            "oversized", epoch + 1, tr["unreadable"], va["val_unreadable"])
            row = {"epoch": epoch + 1, "stage": stage, "lr": optimizer.param_groups[0]["lr"], **tr, **va,
                   "seconds": round(seconds, 3), "images_per_s": round(tr["images"] / max(seconds, 1e-9), 2)}
            log.info("epoch %d/%d [%s] train_loss %.4f val_loss %.4f val_acc %.4f val_gap %.4f (%.0f img/s)",
                     epoch + 1, len(plan), stage, row["train_loss"], row["val_loss"], row["val_acc"],
                     row["val_gap"], row["images_per_s"])
            rngs = all_gather(rng_state(), dist)
            if dist.main:
                tlog.add(row)
                base = checkpoint_state(model, cfg, split, epoch, row)
                if row["val_gap"] > best["val_gap"]:
                    best = dict(row)
                    save_checkpoint(base, run_dir / "best.pt")
                save_checkpoint({**base, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                 "scaler": scaler.state_dict(), "rng": rngs, "best": best, "history": tlog.rows,
                                 "global_step": (epoch + 1) * steps_per_epoch, "sampler_epoch": epoch},
                                run_dir / "last.pt")
            else:
                best = row if row["val_gap"] > best["val_gap"] else best
            barrier(dist)
    finally:
        tlog.close()

    result = {"fold": fold, "run_dir": str(run_dir), "best": best, "epochs": len(plan),
              "skipped_missing": split.missing, "skipped_unreadable": unreadable}
    if dist.main:
        state = load_checkpoint(run_dir, "best.pt")
        unwrap(model).load_state_dict(state["model"])
        result["oof"] = str(write_oof(model, cfg, fold, split, dist, amp))
        log.info("best val_gap %.4f at epoch %d; OOF predictions -> %s", best["val_gap"], best["epoch"],
                 result["oof"])
    barrier(dist)
    return result
