"""`kit to-submission PRED --out submission.csv`: top-1 label and confidence of a prediction file as a Kaggle CSV."""
from __future__ import annotations

from kit.errors import KitError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("to-submission", help="turn a prediction .npz into submission.csv (top-1)",
                              description=__doc__)
    p.add_argument("predictions", help="prediction file (.npz) or a submission CSV to re-validate")
    p.add_argument("--out", default="submission.csv", help="output CSV (default submission.csv)")
    p.add_argument("--sample", help="sample_submission.csv: one row per its ids, in its order (missing = empty; default: none, the file's ids)")
    p.set_defaults(func=run, opencv=False)  # no images: no cv2 import


def run(args) -> int:
    from kit.ensemble.rules import load_any
    from kit.submission import read_sample_ids, write_submission

    pred = load_any(args.predictions)
    if args.sample:
        sample = read_sample_ids(args.sample)
        extra = sorted(set(pred.ids) - set(sample))
        if extra:
            raise KitError(f"{args.predictions}: {len(extra)} id(s) not in {args.sample} (first: {extra[0]})")
        pred = pred.reindex(sample)
    write_submission(pred, args.out)
    print(f"wrote {args.out} ({len(pred)} rows, {int((pred.labels[:, 0] >= 0).sum())} with a landmark)")
    return 0
