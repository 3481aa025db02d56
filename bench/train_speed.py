"""Training images/s of tf_efficientnet_lite0 at 128 px on this CPU: kit's loop vs a bare loop.

Both loops run the same steps on the same in-memory batches with the same optimizer (SGD, report
001's lr 0.01 / momentum 0.9 / wd 1e-4) and the same model (kit's: timm backbone + GeM + FC-BN
neck + linear head; each loop starts from the same weights): `kit.train.loop.train_one_epoch` (per-part
param groups, LambdaLR, GradScaler, accumulation/clip logic, tqdm) against a plain
forward/backward/step. The loops alternate in short rounds (2 steps; kit's per-epoch setup, tqdm
included, is paid every round, which overstates its cost), the order flipping every round. Every
step is timed from one batch request to the next, in wall-clock and in CPU time of this process
(all its threads). On a machine shared with other jobs, load swings wall-clock step times
by up to 15x, so the overhead (target <= 1.10) is the ratio of CPU seconds per step, kit / bare;
wall-clock images/s of each loop's fastest step (its speed when it had the cores) and the paired
per-round wall-clock ratios are reported beside it. A bare
`timm.create_model(..., num_classes=C)` classifier is timed as well, for reference (a model
difference, not loop overhead).

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


class TimedBatches:
    """A list of batches that stamps the clock at every request: consecutive stamps bound one step."""

    def __init__(self, data: list):
        self.data, self.steps, self.cpu = data, [], []

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self):
        last, last_cpu = time.perf_counter(), time.process_time()
        for b in self.data:
            yield b
            now, now_cpu = time.perf_counter(), time.process_time()
            self.steps.append(now - last)
            self.cpu.append(now_cpu - last_cpu)
            last, last_cpu = now, now_cpu


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
    ap.add_argument("--rounds", type=int, default=10, help="alternating rounds per loop")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import timm

    from kit.config import load_config
    from kit.atomic import write_json
    from kit.models.losses import build_loss
    from kit.models.model import build_model
    from kit.train.distributed import Dist
    from kit.train.loop import seed_everything, train_one_epoch
    from kit.train.optim import build_optimizer, build_scheduler

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
    timed = {k: TimedBatches(data) for k in ("kit", "bare", "timm")}
    rounds = {"kit": kit_round, "bare": lambda d: bare_round(bare_model, bare_opt, d), "timm": timm_round}
    seconds = {k: [] for k in rounds}
    for r in range(args.rounds):
        for name in (("bare", "kit", "timm") if r % 2 else ("kit", "bare", "timm")):
            seconds[name].append(rounds[name](timed[name]))
    paired = [k / b for k, b in zip(seconds["kit"], seconds["bare"])]
    times = {k: sorted(v.steps) for k, v in timed.items()}
    cpu = {k: statistics.mean(v.cpu) for k, v in timed.items()}
    ips = {k: args.batch / v[0] for k, v in times.items()}
    result = {
        "backbone": cfg.model.backbone, "image_size": args.size, "batch": args.batch, "classes": args.classes,
        "steps_per_loop": per_round * args.rounds, "rounds": args.rounds, "torch_threads": args.threads,
        "overhead_ratio_kit_vs_bare": round(cpu["kit"] / cpu["bare"], 4),
        "cpu_seconds_per_step": {k: round(v, 4) for k, v in cpu.items()},
        "images_per_s_fastest_step": {k: round(v, 2) for k, v in ips.items()},
        "overhead_ratio_fastest_step": round(ips["bare"] / ips["kit"], 4),
        "paired_round_wall_ratios": [round(x, 4) for x in paired],
        "model_ratio_kit_model_vs_timm_classifier": round(cpu["bare"] / cpu["timm"], 4),
        "step_seconds_sorted": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__, "timm": timm.__version__,
    }
    write_json(result, RESULT)
    print(f"images/s (fastest step)  kit {ips['kit']:.1f}  bare {ips['bare']:.1f}  timm classifier "
          f"{ips['timm']:.1f}; fastest-step ratio {result['overhead_ratio_fastest_step']:.3f}")
    print(f"overhead ratio kit/bare (CPU s/step {cpu['kit']:.3f} / {cpu['bare']:.3f}) "
          f"{result['overhead_ratio_kit_vs_bare']:.3f} (target <= 1.10) -> {RESULT}")


if __name__ == "__main__":
    main()
