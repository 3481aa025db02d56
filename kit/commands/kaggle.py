"""`kit kaggle package --out DIR --runs runs/EXP/foldN ...`: datasets + kernel for an offline Kaggle run.

Writes DIR/<prefix>-wheels/ (kit's wheel and the missing dependencies), DIR/<prefix>-models/ (best.pt +
config.yaml per run, fitted filters and the files they name, kit-manifest.json) and DIR/kernel/
(inference.ipynb + kernel-metadata.json), and prints the commands that upload them whole
(`kaggle datasets create -p DIR --dir-mode zip`: without --dir-mode the client skips the run folders).
Every step the notebook will run is parsed with kit's own parser first: a bad spec fails here.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub) -> None:
    from kit.kaggle import COMPETITION, DEFAULT_DEPS, PREDICT_DEFAULTS

    p = sub.add_parser("kaggle", help="Kaggle tools: package datasets and the inference kernel")
    kaggle_sub = p.add_subparsers(dest="kaggle_command", required=True, metavar="ACTION")
    pk = kaggle_sub.add_parser("package", help="build wheel/model datasets and the offline inference kernel")
    pk.add_argument("--out", required=True, help="output directory")
    pk.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="run dirs runs/<exp>/fold<N>")
    pk.add_argument("--ensemble", metavar="SPEC",
                    help='ensemble of the runs\' predictions, e.g. "soft --weights 0.6,0.4" (files in it are copied)')
    pk.add_argument("--filters", nargs="*", default=[], metavar="SPEC",
                    help='filters applied in order: a fitted one, "distractor --load fitted.json" (saved by '
                         '`kit filter ... --save`; it and the files it names are copied), or "NAME --param k=v"')
    pk.add_argument("--predict", nargs="+", default=[], metavar="KEY=VALUE",
                    help="config overrides of the notebook's predict steps, e.g. predict.batch_size=64 "
                         "predict.tta=hflip data.image_size=160 (default: " +
                         " ".join(f"{k}={v}" for k, v in PREDICT_DEFAULTS.items()) + ")")
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
                    prefix=args.prefix, public_test_count=args.public_test_count, notebook=args.notebook,
                    predict=args.predict)
    for line in summary(paths):
        print(line)
    return 0


def summary(paths: dict) -> list[str]:
    """What was written, what the notebook assumes Kaggle has, and the upload commands."""
    m, upload = paths["manifest"], "kaggle datasets create -p {} --dir-mode zip"
    env, lines = m["environment"], []
    if "wheels" in paths:
        lines += [f"{paths['wheels']}: {', '.join(paths['wheel_files'])}", f"  {upload.format(paths['wheels'])}"]
        if paths["skipped"]:
            lines.append(f"  missing (add by hand): {', '.join(paths['skipped'])}")
    runs = ", ".join(f"{r['exp']}/fold{r['fold']}" for r in m["runs"])
    predict = " ".join(f"{k}={v}" for k, v in m["predict"].items())
    wheels = Path(paths["models"]).name.removesuffix("-models") + "-wheels"
    assumed = ", ".join(env["preinstalled"])
    if env["via_preinstalled"]:
        assumed += f" (and with them {', '.join(env['via_preinstalled'])})"
    lines += [(f"{paths['models']}: runs {runs}; ensemble {' '.join(m['ensemble'] or ['soft'])}; "
               f"filters {len(m['filters'])}; predict {predict}"),
              f"  {upload.format(paths['models'])}",
              f"{paths['kernel']}: inference.ipynb", f"  kaggle kernels push -p {paths['kernel']}",
              f"ships (the {wheels} dataset): {', '.join(env['shipped'])}",
              f"assumes preinstalled on Kaggle: {assumed}",
              "not needed on Kaggle: " + ", ".join(f"{k} ({v})" for k, v in env["not_needed"].items()),
              "later versions: kaggle datasets version -p DIR -m WHY --dir-mode zip"]
    return lines
