"""Speed benches, one command: every speed ratio of the kit measured in the same run.

    python bench/speed.py [--quick] [--only gap_folds,knn]

Runs, in this process, the `main(argv)` of each bench module below (each writes its own
bench/results/<name>.json), then collects their headline numbers into bench/results/speed.json and
prints one table:
  gap_folds    kit GAP vs a plain Python-loop GAP on 1M predictions; `kit folds` on a 4.1M-row CSV
  train_speed  kit training step vs a bare timm loop on the same steps (overhead ratio)
  knn          faiss vs scikit-learn brute-force kNN on 1M x 512 embeddings
  filter_speed seconds per test image of each non-landmark filter
A bench module that is absent is reported as "missing"; one that fails as "failed: <reason>".
`--quick` is passed down to every bench whose parser accepts it (smaller sizes from QUICK_FALLBACK
otherwise); quick results go to <name>.quick.json and speed.quick.json, never over the full ones.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing kit

from kit.atomic import write_json  # noqa: E402

BENCHES = ("gap_folds", "train_speed", "knn", "filter_speed")
# smaller sizes for --quick, for benches whose own parser has no --quick
QUICK_FALLBACK = {"gap_folds": ["--gap-n", "200000"], "knn": ["--n", "100000"],
                  "train_speed": ["--steps", "6", "--rounds", "2", "--batch", "16"]}
# per bench: (what the table calls it, dotted key in the bench's JSON); agreed with the bench's code
HEADLINES = {
    "gap_folds": [
        ("GAP: test ids scored", "gap.n_ids"),
        ("GAP: kit gap() s", "gap.float32_scores.gap_s"),
        ("GAP: Python-loop reference s", "gap.float32_scores.reference_s"),
        ("GAP: speedup kit gap() vs Python loop (x)", "gap.float32_scores.speedup_gap_vs_reference"),
        ("GAP: speedup gap_frames() vs Python loop (x)", "gap.float32_scores.speedup_frames_vs_reference"),
        ("GAP: speedup with heavy score ties (x)", "gap.rounded_scores_heavy_ties.speedup_gap_vs_reference"),
        ("folds: train.csv rows", "folds.rows"),
        ("folds: read train.csv s", "folds.read_s"),
        ("folds: --top 2000 read+fold+write s", "folds.top2000.read_fold_write_s"),
        ("folds: --min-images 50 read+fold+write s", "folds.min_images50.read_fold_write_s"),
    ],
    "knn": [
        ("kNN: database vectors", "n"),
        ("kNN: faiss flat search s", "faiss_flat.search_s"),
        ("kNN: sklearn brute cosine search s", "sklearn_brute_cosine.search_s"),
        ("kNN: speedup faiss flat vs sklearn (x)", "speedup_flat_vs_sklearn"),
        ("kNN: speedup faiss IVF vs sklearn (x)", "faiss_ivf.speedup_vs_sklearn"),
        ("kNN: faiss IVF recall@k vs exact", "faiss_ivf.recall_at_k"),
    ],
    "train_speed": [
        ("train: kit loop images/s", "images_per_s.kit"),
        ("train: bare loop images/s (same model)", "images_per_s.bare"),
        ("train: overhead kit / bare loop (x, target <= 1.10)", "overhead_ratio_kit_vs_bare"),
        ("train: bare timm classifier / kit model (x)", "model_ratio_kit_model_vs_timm_classifier"),
    ],
}
# benches without an entry above: numbers whose key names a ratio, speedup, overhead or per-image time
GENERIC = ("ratio", "speedup", "overhead", "per_image", "per_img")


def load_bench(name: str):
    """The module bench/<name>.py, or None if the file does not exist."""
    path = HERE / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def accepts(module, flag: str) -> bool:
    """Whether the bench's command line knows `flag` (read from its parser, else its source text)."""
    build = getattr(module, "build_parser", None)
    if callable(build):
        with contextlib.suppress(SystemExit, TypeError):
            return any(flag in a.option_strings for a in build()._actions)
    src = Path(module.__file__).read_text()
    return f'"{flag}"' in src or f"'{flag}'" in src


def bench_argv(name: str, module, quick: bool) -> tuple[list[str], Path]:
    """Command line for one bench and the JSON it will write. Quick runs write <name>.quick.json (via
    --out, or moved there by `keep_full_results`) so they never overwrite the full results."""
    out = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    argv: list[str] = []
    if quick:
        argv += ["--quick"] if accepts(module, "--quick") else QUICK_FALLBACK.get(name, [])
        if accepts(module, "--out"):
            argv += ["--out", str(out)]
    return argv, out


@contextlib.contextmanager
def keep_full_results(name: str, out: Path):
    """For a quick run of a bench that always writes <name>.json: afterwards move what it wrote to
    `out` and put the previous full <name>.json back."""
    full = RESULTS / f"{name}.json"
    if out == full:
        yield
        return
    saved = full.read_bytes() if full.is_file() else None
    before = full.stat().st_mtime_ns if full.is_file() else None
    try:
        yield
    finally:
        if full.is_file() and full.stat().st_mtime_ns != before:
            os.replace(full, out)
            if saved is not None:
                full.write_bytes(saved)


def call_main(module, argv: list[str]):
    """main(argv) if it takes an argument, else main() with sys.argv set to argv."""
    main = module.main
    saved = sys.argv
    sys.argv = [module.__file__, *argv]
    try:
        return main(argv) if inspect.signature(main).parameters else main()
    finally:
        sys.argv = saved


def lookup(obj, dotted: str):
    for k in dotted.split("."):
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def flatten(obj, prefix: str = "") -> dict:
    if not isinstance(obj, dict):
        return {prefix.rstrip("."): obj}
    return {k: v for key, val in obj.items() for k, v in flatten(val, f"{prefix}{key}.").items()}


def headline(name: str, results: dict) -> dict[str, float]:
    """The numbers of one bench that go in the table: its HEADLINES entry, else the generic keys."""
    if name in HEADLINES:
        pairs = [(label, lookup(results, key)) for label, key in HEADLINES[name]]
    else:
        pairs = [(k, v) for k, v in flatten(results).items() if any(g in k.rsplit(".", 1)[-1].lower() for g in GENERIC)]
    return {label: float(v) for label, v in pairs if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_bench(name: str, quick: bool) -> dict:
    """Run one bench module's main() in this process; its status, wall time and its JSON."""
    module = load_bench(name)
    if module is None:
        return {"status": "missing", "note": f"bench/{name}.py does not exist"}
    if not callable(getattr(module, "main", None)):
        return {"status": "failed: no main()"}
    argv, out_json = bench_argv(name, module, quick)
    before = out_json.stat().st_mtime_ns if out_json.is_file() else None
    t0 = time.perf_counter()
    try:
        with keep_full_results(name, out_json) if "--out" not in argv else contextlib.nullcontext():
            rc = call_main(module, argv)
    except SystemExit as e:
        rc = e.code
    except Exception as e:  # a bench that breaks must not hide the others' numbers
        traceback.print_exc()
        return {"status": f"failed: {type(e).__name__}: {e}", "argv": argv, "seconds": time.perf_counter() - t0}
    seconds = time.perf_counter() - t0
    if rc not in (None, 0):
        return {"status": f"failed: exit {rc}", "argv": argv, "seconds": seconds}
    if not out_json.is_file() or out_json.stat().st_mtime_ns == before:
        return {"status": f"failed: did not write {out_json.name}", "argv": argv, "seconds": seconds}
    results = json.loads(out_json.read_text())
    return {"status": "ok", "argv": argv, "json": out_json.name, "seconds": seconds,
            "headline": headline(name, results), "results": results}


def format_table(benches: dict) -> str:
    lines = [f"{'bench':<14} {'measure':<58} {'value':>12}", "-" * 86]
    for name, b in benches.items():
        if b["status"] != "ok":
            lines.append(f"{name:<14} {b['status'][:58]:<58} {'':>12}")
            continue
        for key, v in b["headline"].items():
            value = f"{int(v):,}" if float(v).is_integer() and abs(v) >= 1000 else f"{v:.4g}"
            lines.append(f"{name:<14} {key[:58]:<58} {value:>12}")
        lines.append(f"{name:<14} {'(bench wall time, s)':<58} {b['seconds']:>12.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, passed to every bench that accepts it")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown bench(es) {', '.join(unknown)} (valid: {', '.join(BENCHES)})")
    benches = {}
    for name in names:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        benches[name] = run_bench(name, args.quick)
    env = {"python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor()}
    with contextlib.suppress(ImportError):
        import torch

        env.update(torch=torch.__version__, threads=torch.get_num_threads(),
                   device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    name = "speed.quick.json" if args.quick else "speed.json"
    write_json({"command": "python bench/speed.py" + (" --quick" if args.quick else ""), "quick": args.quick,
                "env": env, "benches": benches}, RESULTS / name)
    print(format_table(benches))
    print(f"written {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
