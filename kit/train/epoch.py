"""One training epoch (accumulation, AMP, DDP no_sync, clipping) and one evaluation pass gathered from every rank."""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from kit.data.dataset import has_images
from kit.errors import KitError
from kit.metrics import gap
from kit.progress import progress
from kit.train.distributed import Dist, all_gather


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
    """Val loss (no margin: the head gets no labels), top-1 accuracy and GAP, gathered from every rank."""
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
