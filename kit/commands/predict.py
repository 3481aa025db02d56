"""`kit predict --config CONFIG --fold N --split {val,test,train} [key=value ...]`: best checkpoint -> prediction file.

Writes predictions/<name>/<split>_fold<N>.npz (top-k landmark ids, confidences, L2-normalised
embeddings; see kit/predictions.py) and, with --submission PATH, a submission CSV of the top-1.
val: the fold's validation rows (prints GAP); train: its training rows (embeddings for `kit retrieve`);
test: every id of DATA/sample_submission.csv.
"""
from __future__ import annotations

from kit.commands import add_config_arguments


def add_parser(subparsers) -> None:
    from kit.inference.engine import TTAS
    from kit.inference.predict import SPLITS

    p = subparsers.add_parser("predict", help="predict val/test/train images with a trained fold (.npz)",
                              description=__doc__)
    add_config_arguments(p, fold_help="which trained fold: runs/<name>/fold<N>/best.pt (default 0)")
    p.add_argument("--split", choices=SPLITS, default="test", help="images to predict (default test)")
    p.add_argument("--tta", choices=list(TTAS), help="test-time augmentation (= predict.tta=NAME; default: the config's)")
    p.add_argument("--checkpoint", help="a .pt file or run folder (default runs/<name>/fold<N>/best.pt); "
                   "'pretrained' = no training: embeddings of the backbone's pretrained weights (for `kit retrieve`)")
    p.add_argument("--out", help="prediction file (default predictions/<name>/<split>_fold<N>.npz)")
    p.add_argument("--submission", metavar="PATH", help="also write the top-1 as a submission CSV (default: none)")
    p.add_argument("--strict", action="store_true",
                   help="a missing/undecodable/oversized image is an error (= data.strict=true)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from kit.config import load_config
    from kit.inference.predict import run_predict

    cfg = load_config(args.config, args.overrides + ([f"predict.tta={args.tta}"] if args.tta else [])
                      + (["data.strict=true"] if getattr(args, "strict", False) else []))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_predict(cfg, args.fold, args.split, submission=args.submission, checkpoint=args.checkpoint, out=args.out)
    return 0
