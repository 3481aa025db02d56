"""Bench: what kit's recipe runner adds over calling the stage functions directly, and the cost of a
`kit run` on a finished work folder.

    python bench/runner.py            # -> bench/results/runner.json

On tiny synthetic data (kit synth), the same four stages (folds, predict, retrieve, submission) run
(a) as plain calls of the stage functions with a hand-made context, (b) through `run_recipe` in a fresh
work folder, alternating, `--repeat` times; the runner's overhead per stage is (b - a) / stages. Then
`kit run` of the finished folder in a fresh interpreter (every stage skipped), timed end to end.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE = {"name": "bench-runner", "workers": 0, "stages": [
    {"folds": {"min_images": 1, "n_folds": 2}},
    {"predict": {"checkpoint": "pretrained", "set": {"data.image_size": 64, "data.batch_size": 32}}},
    {"retrieve": {"embeddings": "predict", "k": 5}},
    {"submission": {"input": "retrieve", "folds": "folds"}}]}


def direct(data: Path, work: Path) -> float:
    """The stage functions called in order, no runner: no fingerprints, no stage.json, no lock."""
    from kit.pipeline.recipe import load_recipe
    from kit.pipeline.stage import Context

    recipe = load_recipe(RECIPE)
    outputs = {}
    t0 = time.perf_counter()
    for spec in recipe.stages:
        folder = work / spec.id
        folder.mkdir(parents=True, exist_ok=True)
        ctx = Context(data=data, work=work, dir=folder, run=recipe.run, outputs=outputs, log=lambda *_: None)
        outputs[spec.id] = spec.stage.run(spec.settings, ctx)
    return time.perf_counter() - t0


def through_runner(data: Path, work: Path) -> float:
    from kit.pipeline.runner import run_recipe

    t0 = time.perf_counter()
    run_recipe(RECIPE, data, work, log=lambda *_: None)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="alternating direct / runner runs (default 3)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "runner.json"), help="result JSON")
    args = p.parse_args(argv)
    import yaml

    from kit.cli import main as kit
    from kit.atomic import write_json
    from kit.pipeline import stages  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        kit(["synth", "--out-dir", str(data), "--classes", "4", "--images", "48", "--test-images", "12", "--size", "64",
             "--distractor-images", "4", "--workers", "1"])
        through_runner(data, tmp / "warm")   # imports and first-call costs out of the timings
        a, b = [], []
        for i in range(args.repeat):
            a.append(direct(data, tmp / f"direct{i}"))
            b.append(through_runner(data, tmp / f"runner{i}"))
        recipe = tmp / "r.yaml"
        recipe.write_text(yaml.safe_dump(RECIPE))
        cached = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kit", "run", str(recipe), "--data-dir", str(data), "--work-dir",
                            str(tmp / "runner0")], check=True, capture_output=True)
            cached.append(time.perf_counter() - t0)
        shutil.rmtree(tmp / "warm")
    n = len(RECIPE["stages"])
    result = {"command": "python bench/runner.py" + (f" --repeat {args.repeat}" if args.repeat != 3 else ""),
              "stages": n, "direct_seconds": [round(x, 3) for x in a], "runner_seconds": [round(x, 3) for x in b],
              "overhead_per_stage_seconds": round((min(b) - min(a)) / n, 4),
              "cached_kit_run_seconds": [round(x, 3) for x in cached],
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_average": list(os.getloadavg())}
    write_json(result, args.out)
    print(f"runner overhead per stage {result['overhead_per_stage_seconds']:.4f} s (best of {args.repeat}); "
          f"kit run on a finished folder {min(cached):.2f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
