"""`kit kaggle package --recipe RECIPE --work-dir DIR --out-dir DIR`: datasets + kernel for an offline Kaggle run.

Writes DIR/<prefix>-wheels/ (kit's wheel, missing dependencies), DIR/<prefix>-models/ (the packaged recipe and what
its inference needs from the finished `kit run` in --work-dir; kit-manifest.json) and DIR/kernel/ (inference.ipynb),
and prints the upload commands (`kaggle datasets create -p DIR --dir-mode zip`: without --dir-mode the client skips
the stage folders).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from kit.commands import renamed


def add_parser(sub) -> None:
    from kit.kaggle import COMPETITION, DEFAULT_DEPS

    p = sub.add_parser("kaggle", help="Kaggle tools: package a recipe's datasets and the inference kernel",
                       description=__doc__)
    kaggle_sub = p.add_subparsers(dest="kaggle_command", required=True, metavar="ACTION")
    pk = kaggle_sub.add_parser("package", help="build wheel/model datasets and the offline inference kernel",
                               description=__doc__)
    pk.add_argument("--recipe", required=True, help="the recipe file (or shipped name) that `kit run` finished")
    pk.add_argument("--work-dir", required=True, help="the work folder of that `kit run`")
    pk.add_argument("--out-dir", required=True, help="output folder for the datasets and the kernel")
    pk.add_argument("overrides", nargs="*", metavar="key=value",
                    help="the same overrides given to `kit run` (default: none)")
    pk.add_argument("--user", default=os.environ.get("KAGGLE_USERNAME"),
                    help="your Kaggle username, owner of the datasets and kernel (default: $KAGGLE_USERNAME)")
    pk.add_argument("--competition", default=COMPETITION, help=f"competition slug (default: {COMPETITION})")
    pk.add_argument("--prefix", default="kit", help="dataset/kernel name prefix (default: kit)")
    pk.add_argument("--deps", nargs="*", default=list(DEFAULT_DEPS), metavar="PKG",
                    help=f"extra wheels Kaggle's image lacks (default: {' '.join(DEFAULT_DEPS)}; the weights "
                         "packages of the recipe's zero-training backbones are added)")
    pk.add_argument("--find-links", nargs="*", default=[], metavar="DIR",
                    help="take --deps wheels only from these folders (offline; default: the package index)")
    pk.add_argument("--wheels", action=argparse.BooleanOptionalAction, default=True,
                    help="build the wheels dataset (--no-wheels: reuse one already uploaded)")
    pk.add_argument("--public-test-count", type=int, default=0,
                    help="rows of the public sample_submission.csv: the notebook writes it quickly when the "
                         "test set has this size (the save run), and runs fully on the hidden rerun; 0 = always full")
    pk.add_argument("--notebook", help="notebook to ship (default: notebooks/inference.ipynb of the checkout)")
    renamed(pk, work="--work-dir", out="--out-dir")
    pk.set_defaults(func=run_package)


def run_package(args: argparse.Namespace) -> int:
    from kit.errors import KitError
    from kit.kaggle.package import package

    if not args.user:
        raise KitError("kaggle package: pass --user NAME (your Kaggle username; ids are NAME/<slug>)")
    paths = package(args.out_dir, args.user, args.recipe, args.work_dir, args.overrides, deps=args.deps,
                    wheels=args.wheels, find_links=args.find_links, competition=args.competition, prefix=args.prefix,
                    public_test_count=args.public_test_count, notebook=args.notebook)
    print("\n".join(summary(paths)))
    return 0


def summary(paths: dict) -> list[str]:
    """What was written, what the notebook assumes Kaggle has, and the upload commands."""
    m, upload = paths["manifest"], "kaggle datasets create -p {} --dir-mode zip"
    env, lines = m["environment"], []
    if "wheels" in paths:
        lines += [f"{paths['wheels']}: {', '.join(paths['wheel_files'])}", f"  {upload.format(paths['wheels'])}"]
        if paths["skipped"]:
            lines.append(f"  missing (add by hand): {', '.join(paths['skipped'])}")
    stages = " -> ".join(next(iter(s.values())).get("id", next(iter(s))) for s in m["recipe"]["stages"])
    wheels = Path(paths["models"]).name.removesuffix("-models") + "-wheels"
    assumed = ", ".join(env["preinstalled"])
    if env["via_preinstalled"]:
        assumed += f" (and with them {', '.join(env['via_preinstalled'])})"
    lines += [f"{paths['models']}: recipe {m['recipe']['name']} ({stages}); {len(m['files'])} files",
              f"  {upload.format(paths['models'])}",
              f"{paths['kernel']}: inference.ipynb", f"  kaggle kernels push -p {paths['kernel']}",
              f"ships (the {wheels} dataset): {', '.join(env['shipped'])}",
              f"assumes preinstalled on Kaggle: {assumed}",
              "not needed on Kaggle: " + ", ".join(f"{k} ({v})" for k, v in env["not_needed"].items()),
              "later versions: kaggle datasets version -p DIR -m WHY --dir-mode zip"]
    return lines
