"""`kit folds`: keep the top-K (or >= N images) classes of train.csv and write stratified folds."""
from __future__ import annotations

from kit.commands import renamed


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("folds", help="class subset + stratified folds -> folds/NAME.csv", description=__doc__)
    p.add_argument("--labels", required=True, help="GLDv2 train.csv or any CSV with id,landmark_id (required)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--top", type=int, metavar="K", help="keep the K most frequent classes (ties: lower landmark_id; required: this or --min-images)")
    which.add_argument("--min-images", type=int, metavar="N", help="keep every class with >= N images (required: this or --top)")
    p.add_argument("--n-folds", type=int, default=5, metavar="F", help="number of stratified folds (default 5)")
    p.add_argument("--holdout", action="store_true",
                   help="report 001's 90/6/4 split instead: fold 1 = train, 0 = val, -1 = holdout")
    p.add_argument("--clean-csv", help="GLDv2-clean CSV (landmark_id,images): keep only the images it lists (default: keep all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--out", required=True, help="output CSV, e.g. folds/top2k.csv (id,landmark_id,label,fold; required)")
    renamed(p, train_csv="--labels")
    p.set_defaults(func=run, opencv=False)  # no images: no cv2 import


def run(args) -> int:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from kit.data.folds import fold_summary, folds_from_csv, write_folds

    t0 = time.perf_counter()
    folds, n_rows = folds_from_csv(args.labels, args.clean_csv, args.top, args.min_images, args.n_folds,
                                   args.holdout, args.seed)
    with ThreadPoolExecutor(1) as pool:  # the summary is counted while the file is written (its threads wait on I/O)
        summary = pool.submit(fold_summary, folds, n_rows)
        write_folds(folds, args.out)
    print(f"read {args.labels}: {n_rows} rows" + (f"; kept the images {args.clean_csv} lists" if args.clean_csv else ""))
    print(summary.result())
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
