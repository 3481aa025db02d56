"""`kit run RECIPE --data-dir DIR --work-dir DIR [key=value ...]`: run a recipe's stages in order.

RECIPE is a YAML file or a shipped recipe's name (retrieval, classifier, demo; see recipes/). Each stage
writes under WORK/<stage id>/; a re-run skips the stages whose settings and inputs are unchanged, so a
killed run resumes where it stopped. Ends with WORK/submission.csv and, when DATA has test_solution.csv,
the GAP as the last line. Overrides: `seed=1` (run settings) or `STAGE.key=value`, e.g.
`predict.set.data.image_size=256`, `rerank.candidates=20`.
"""
from __future__ import annotations

from kit.commands import renamed


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("run", help="run a recipe (the whole pipeline as data) -> WORK/submission.csv",
                              description=__doc__)
    p.add_argument("recipe", metavar="RECIPE", help="recipe YAML file or shipped recipe name (retrieval, classifier, demo)")
    p.add_argument("--data-dir", help="GLDv2-layout folder: train.csv, train/, test/, sample_submission.csv "
                   "(default: none, for a recipe that makes its data: demo)")
    p.add_argument("--work-dir", default="work", help="work folder for every stage's outputs (default: work)")
    p.add_argument("--check", action="store_true", help="validate the recipe and list its stages; run nothing")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="run settings (seed=1) or STAGE.key=value")
    renamed(p, data="--data-dir", work="--work-dir")
    p.set_defaults(func=run)


def run(args) -> int:
    from kit.pipeline import stages  # noqa: F401  (registers the stages)
    from kit.pipeline.recipe import load_recipe
    from kit.pipeline.runner import run_recipe

    recipe = load_recipe(args.recipe, args.overrides, deep=args.check)   # the runner checks deeply when a stage runs
    if args.check:
        for i, s in enumerate(recipe.stages, 1):
            print(f"[{i}/{len(recipe.stages)}] {s.id} ({s.stage.name}): {s.stage.help}")
        print(f"{recipe.source}: {len(recipe.stages)} stages, valid")
        return 0
    run_recipe(recipe, args.data_dir, args.work_dir)
    return 0
