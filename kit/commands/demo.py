"""`kit demo --out-dir DIR`: `kit run demo` on the embedded synthetic data (recipes/demo.yaml).

synth -> folds (2k-like and 18k-like subsets) -> train two models -> predict -> ensemble, non-landmark
filter and retrieval + spatial re-rank -> the best on validation -> submission.csv -> GAP (last line).
"""
from __future__ import annotations

import argparse

from kit.commands import renamed

# --quick: the same recipe on tiny data with 3 training steps (the tests run it)
QUICK = ["synth.classes=8", "synth.images=240", "synth.test_images=60", "synth.distractor_images=20", "synth.size=64",
         "top2k.top=4", "top18k.min_images=12", "filter.image_size=64", "rerank.image_size=64"] + [
    f"{m}.set.{k}={v}" for m in ("model18k", "model2k") for k, v in
    (("data.image_size", 64), ("data.batch_size", 16), ("optim.epochs", 1), ("optim.max_steps_per_epoch", 3))] + [
    f"{p}.set.data.image_size=64" for p in ("predict18k", "predict2k")]


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on synthetic data and print the final GAP",
                       description=__doc__)
    p.add_argument("--out-dir", default="demo", help="work folder (default: demo)")
    p.add_argument("--quick", action="store_true", help="tiny data and 3 training steps (a minute; for tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, folds and training (default 0)")
    renamed(p, out="--out-dir")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kit.pipeline import stages  # noqa: F401  (registers the stages)
    from kit.pipeline.runner import run_recipe

    run_recipe("demo", None, args.out_dir, overrides=(QUICK if args.quick else []) + [f"seed={args.seed}"])
    return 0
