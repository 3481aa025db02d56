"""`kit kaggle package --out DIR --runs runs/EXP/foldN ...`: datasets + kernel for an offline Kaggle run.

Writes DIR/<prefix>-wheels/ (kit's wheel and the missing dependencies), DIR/<prefix>-models/ (best.pt +
config.yaml per run, fitted parameters, kit-manifest.json) and DIR/kernel/ (inference.ipynb +
kernel-metadata.json), each ready for `kaggle datasets create -p` / `kaggle kernels push -p`.
"""
from __future__ import annotations

import argparse
import os


def add_parser(sub) -> None:
    from kit.kaggle import COMPETITION, DEFAULT_DEPS

    p = sub.add_parser("kaggle", help="Kaggle tools: package datasets and the inference kernel")
    kaggle_sub = p.add_subparsers(dest="kaggle_command", required=True, metavar="ACTION")
    pk = kaggle_sub.add_parser("package", help="build wheel/model datasets and the offline inference kernel")
    pk.add_argument("--out", required=True, help="output directory")
    pk.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="run dirs runs/<exp>/fold<N>")
    pk.add_argument("--ensemble", metavar="SPEC",
                    help='ensemble of the runs\' predictions, e.g. "soft --weights 0.6,0.4" (files in it are copied)')
    pk.add_argument("--filters", nargs="*", default=[], metavar="SPEC",
                    help='filters applied in order, e.g. "delf --params fitted.json" (files in it are copied)')
    pk.add_argument("--user", default=os.environ.get("KAGGLE_USERNAME"),
                    help="your Kaggle username, owner of the datasets and kernel (default: $KAGGLE_USERNAME)")
    pk.add_argument("--competition", default=COMPETITION, help=f"competition slug (default: {COMPETITION})")
    pk.add_argument("--prefix", default="kit", help="dataset/kernel name prefix (default: kit)")
    pk.add_argument("--deps", nargs="*", default=list(DEFAULT_DEPS), metavar="PKG",
                    help=f"extra wheels Kaggle's image lacks (default: {' '.join(DEFAULT_DEPS)})")
    pk.add_argument("--find-links", nargs="*", default=[], metavar="DIR",
                    help="take --deps wheels only from these dirs (offline); default: the package index")
    pk.add_argument("--wheels", action=argparse.BooleanOptionalAction, default=True,
                    help="build the wheels dataset (--no-wheels: reuse one already uploaded)")
    pk.add_argument("--public-test-count", type=int, default=0,
                    help="rows of the public sample_submission.csv: the notebook writes it quickly when the "
                         "test set has this size (the save run), and runs fully on the hidden rerun; 0 = always full")
    pk.add_argument("--notebook", help="notebook to ship (default: notebooks/inference.ipynb of the checkout)")
    pk.set_defaults(func=run_package)


def run_package(args: argparse.Namespace) -> int:
    from kit.errors import KitError
    from kit.kaggle.package import package

    if not args.user:
        raise KitError("kaggle package: pass --user NAME (your Kaggle username; ids are NAME/<slug>)")
    paths = package(args.out, args.user, runs=args.runs, filters=args.filters, ensemble=args.ensemble,
                    deps=args.deps, wheels=args.wheels, find_links=args.find_links, competition=args.competition,
                    prefix=args.prefix, public_test_count=args.public_test_count, notebook=args.notebook)
    if "wheels" in paths:
        print(f"{paths['wheels']}: {', '.join(paths['wheel_files'])}")
        if paths["skipped"]:
            print(f"  missing (add by hand): {', '.join(paths['skipped'])}")
        print(f"  kaggle datasets create -p {paths['wheels']}")
    print(f"{paths['models']}: {len(paths['manifest']['runs'])} run(s)\n  kaggle datasets create -p {paths['models']}")
    print(f"{paths['kernel']}: inference.ipynb\n  kaggle kernels push -p {paths['kernel']}")
    return 0
