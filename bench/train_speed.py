"""Training images/s of tf_efficientnet_lite0 at 128 px on this CPU: kit's loop vs a bare loop.

Both loops run the same steps on the same in-memory batches with the same optimizer (SGD, report
001's lr 0.01 / momentum 0.9 / wd 1e-4) and the same model (kit's: timm backbone + GeM + FC-BN
neck + linear head; each loop starts from the same weights): `kit.train.train_one_epoch` (per-part
param groups, LambdaLR, GradScaler, accumulation/clip logic, tqdm) against a plain
forward/backward/step. Rounds alternate between the two so load from other processes hits both
alike; the median round time gives the overhead ratio kit/bare (target <= 1.10). A bare
`timm.create_model(..., num_classes=C)` classifier is timed too, for reference (model difference,
not loop overhead).

    .venv/bin/python bench/train_speed.py [--steps 20] [--batch 32] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

RESULT = Path(__file__).parent / "results" / "train_speed.json"


def batches(n: int, batch: int, size: int, classes: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randn(batch, 3, size, size, generator=g),
             "label": torch.randint(0, classes, (batch,), generator=g)} for _ in range(n)]


def sgd(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)


def kit_logits(model, images, labels):
    return model(images, labels)["logits"]


def timm_logits(model, images, labels):
    return model(images)


def bare_round(model, opt, data, logits=kit_logits) -> float:
    """Plain loop: forward, cross-entropy, backward, step."""
    model.train()
    t0 = time.perf_counter()
    for b in data:
        loss = F.cross_entropy(logits(model, b["image"], b["label"]), b["label"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per loop (split into rounds)")
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds per loop")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import timm

    from kit.config import load_config
    from kit.io import write_json
    from kit.losses import build_loss
    from kit.model import build_model
    from kit.train import Dist, build_optimizer, build_scheduler, seed_everything, train_one_epoch

    cfg = load_config("top2k", ["model.weights=none", f"data.image_size={args.size}", "optim.max_steps_per_epoch=0"])
    per_round = max(1, args.steps // args.rounds)
    data = batches(per_round, args.batch, args.size, args.classes)
    warm = data[:2]

    seed_everything(0)
    kit_model = build_model(cfg.model, args.classes)
    bare_model = copy.deepcopy(kit_model)
    loss_fn = build_loss(cfg.model, args.classes)
    kit_opt = build_optimizer(kit_model, cfg.optim)
    sched = build_scheduler(kit_opt, cfg.optim, steps_per_epoch=per_round, epochs=args.rounds + 1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    bare_opt = sgd(bare_model.parameters())
    timm_model = timm.create_model(cfg.model.backbone, pretrained=False, num_classes=args.classes)
    timm_opt = sgd(timm_model.parameters())

    def kit_round(d):
        kit_model.train()
        t0 = time.perf_counter()
        train_one_epoch(kit_model, d, loss_fn, kit_opt, sched, scaler, cfg.optim, Dist(), amp=False,
                        channels_last=False, desc="kit")
        return time.perf_counter() - t0

    def timm_round(d):
        return bare_round(timm_model, timm_opt, d, logits=timm_logits)

    for fn in (kit_round, lambda d: bare_round(bare_model, bare_opt, d), timm_round):  # warm-up
        fn(warm)
    times = {"kit": [], "bare": [], "timm": []}
    for _ in range(args.rounds):
        times["bare"].append(bare_round(bare_model, bare_opt, data))
        times["kit"].append(kit_round(data))
        times["timm"].append(timm_round(data))
    images = per_round * args.batch
    ips = {k: images / statistics.median(v) for k, v in times.items()}
    result = {
        "backbone": cfg.model.backbone, "image_size": args.size, "batch": args.batch, "classes": args.classes,
        "steps_per_loop": per_round * args.rounds, "rounds": args.rounds, "torch_threads": args.threads,
        "images_per_s": {k: round(v, 2) for k, v in ips.items()},
        "overhead_ratio_kit_vs_bare": round(ips["bare"] / ips["kit"], 4),
        "model_ratio_kit_model_vs_timm_classifier": round(ips["timm"] / ips["bare"], 4),
        "round_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__, "timm": timm.__version__,
    }
    write_json(result, RESULT)
    print(f"images/s  kit {ips['kit']:.1f}  bare {ips['bare']:.1f}  timm classifier {ips['timm']:.1f}")
    print(f"overhead ratio kit/bare {result['overhead_ratio_kit_vs_bare']:.3f} (target <= 1.10) -> {RESULT}")


if __name__ == "__main__":
    main()
