"""`kit report`: one self-contained HTML page for an experiment or a whole run (curves, GAP by class
frequency, nearest-neighbour gallery, ensemble comparison)."""
from __future__ import annotations

from kit.commands import renamed


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="write an HTML report of runs, predictions and ensembles",
                              description=__doc__)
    p.add_argument("--runs-dir", default="runs", help="runs/<exp>/fold<N>/ (metrics.csv, best.pt)")
    p.add_argument("--predictions-dir", default="predictions",
                   help="prediction files predictions/<exp>/{oof,val,test,train}_fold<N>.npz")
    p.add_argument("--ensembles-dir",
                   help="ensemble prediction files *.npz (default: ensembles/ beside --predictions-dir)")
    p.add_argument("--exp", help="one experiment (default: every experiment found)")
    p.add_argument("--data-dir", help="GLDv2 data folder, for thumbnails (default: none, no images)")
    p.add_argument("--solution", help="test_solution.csv (id,landmarks): truth of test ids (default: none)")
    p.add_argument("--labels", help="folds CSV or train.csv (id,landmark_id): truth of train ids and class counts "
                                    "(default: none)")
    p.add_argument("--comparison",
                   help='ensemble comparison JSON {"method": {"gap": ...}} (e.g. from kit demo; default: none)')
    p.add_argument("--filtered", help="filtered prediction file whose verdicts the gallery shows "
                                      "(default: newest *filter*/*delf* .npz found)")
    p.add_argument("--gallery", type=int, default=8, help="test images in the gallery (default 8)")
    p.add_argument("--rare-below", type=int, default=100,
                   help="classes with fewer training images are 'rare' (Mail.ru: 100, the default)")
    p.add_argument("--out", default="report/index.html", help="output HTML (default report/index.html)")
    renamed(p, folds_csv="--labels")
    p.set_defaults(func=run)


def run(args) -> int:
    from kit.report.render import build_report

    out = build_report(args.out, runs_dir=args.runs_dir, predictions_dir=args.predictions_dir, exp=args.exp,
                       data_dir=args.data_dir, solution=args.solution, folds=args.labels,
                       comparison=args.comparison, ensembles_dir=args.ensembles_dir, filtered=args.filtered,
                       gallery=args.gallery, rare_below=args.rare_below)
    print(f"report written to {out}")
    return 0
