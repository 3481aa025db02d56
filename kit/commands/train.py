"""`kit train --config CONFIG --fold N [key=value ...]`: train one model on one fold of a folds CSV.

Writes runs/<name>/fold<N>/{last.pt,best.pt,config.yaml,metrics.csv,curves.png,tb/} and the
out-of-fold predictions predictions/<name>/oof_fold<N>.npz. Under `torchrun --nproc_per_node K`
the same command trains with DDP (data.batch_size stays the global batch).
"""
from __future__ import annotations

from kit.commands import add_config_arguments


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model on one fold (checkpoints, metrics, OOF predictions)",
                              description=__doc__)
    add_config_arguments(p, fold_help="validation fold N: train on the other folds (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from runs/<name>/fold<N>/last.pt")
    p.add_argument("--strict", action="store_true", help="missing/corrupt images are an error, not skipped")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from kit.config import load_config

    cfg = load_config(args.config, args.overrides + (["data.strict=true"] if args.strict else []))
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from kit.train.loop import train

    result = train(cfg, args.fold, resume=args.resume)
    best = result["best"]
    print(f"best epoch {best['epoch']}: val_acc {best.get('val_acc', 0):.4f} val_gap {best['val_gap']:.4f}")
    print(f"run dir {result['run_dir']}")
    if result.get("skipped_missing") or result.get("skipped_unreadable"):
        print(f"skipped images: {result.get('skipped_missing', 0)} missing, "
              f"{result.get('skipped_unreadable', 0)} undecodable/truncated/oversized (--strict to stop on them)")
    if "oof" in result:
        print(f"OOF predictions {result['oof']}")
    return 0
