"""`kit folds`: keep the top-K (or >= N images) classes of train.csv and write stratified folds."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("folds", help="class subset + stratified folds -> folds/NAME.csv", description=__doc__)
    p.add_argument("--train-csv", required=True, help="GLDv2 train.csv (id,url,landmark_id)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--top", type=int, metavar="K", help="keep the K most frequent classes (ties: lower landmark_id)")
    which.add_argument("--min-images", type=int, metavar="N", help="keep every class with >= N images")
    p.add_argument("--n-folds", type=int, default=5, metavar="F", help="number of stratified folds (default 5)")
    p.add_argument("--holdout", action="store_true",
                   help="report 001's 90/6/4 split instead: fold 1 = train, 0 = val, -1 = holdout")
    p.add_argument("--clean-csv", help="GLDv2-clean CSV (landmark_id,images): keep only the images it lists")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--out", required=True, help="output CSV, e.g. folds/top2k.csv (id,landmark_id,label,fold)")
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    from kit.data.folds import make_folds, read_clean, read_train, restrict_to_clean, fold_summary, write_folds

    t0 = time.perf_counter()
    train = read_train(args.train_csv)
    n_rows = len(train)
    print(f"read {args.train_csv}: {n_rows} rows, {train['landmark_id'].nunique()} classes")
    if args.clean_csv:
        train = restrict_to_clean(train, read_clean(args.clean_csv), args.clean_csv)
        print(f"clean subset {args.clean_csv}: {len(train)} rows kept")
    folds = make_folds(train, args.top, args.min_images, args.n_folds, args.holdout, args.seed)
    write_folds(folds, args.out)
    print(fold_summary(folds, n_rows))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
