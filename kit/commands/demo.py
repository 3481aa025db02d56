"""`kit demo --out DIR`: the whole pipeline on the embedded synthetic data, printing each command it runs.

synth -> folds (2k-like and 18k-like subsets) -> train two models -> predict -> five ensembles scored
side by side -> non-landmark filter -> submission.csv -> GAP (last line).
"""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on synthetic data and print the final GAP")
    p.add_argument("--out", default="demo", help="working directory (default: demo)")
    p.add_argument("--quick", action="store_true", help="tiny data and 1 short epoch (for tests)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kit.demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed)
    return 0
