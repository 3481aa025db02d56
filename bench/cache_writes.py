"""Bench: the cost of a write does not grow with the folder it goes to.

1. 100,000 local-feature cache entries (kit.localfeatures.base.save_features: temp file + rename, no fsync)
   into ONE cache folder: mean time per write over the first and the last 1,000 writes.
2. Durable writes (kit.atomic.write_text: fsync of the file and the folder) into an empty folder and into
   the folder of 100,000 entries: median time per write over 200 writes each.

Target: last / first <= 1.5 for both. Writes bench/results/cache_writes.json.

    python bench/cache_writes.py [--n 100000] [--dir /tmp/kit_cache_bench]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kit.atomic import write_json, write_text  # noqa: E402
from kit.localfeatures.base import LocalFeatures, save_features  # noqa: E402


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
        cores = next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("CPU(s)"))
        return f"{model}, {cores} cores"
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def durable_writes(folder: Path, n: int = 200) -> float:
    """Median seconds per write_text into `folder` (each a new file)."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        write_text("x\n", folder / f"durable_{i}.txt")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="cache writes into one folder")
    ap.add_argument("--window", type=int, default=1000, help="writes per timed window (first and last)")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temp folder, removed after)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cache_writes.json"))
    args = ap.parse_args()
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="kit_cache_bench_"))
    cache = scratch / "cache" / "ab"
    empty = scratch / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    feat = LocalFeatures(rng.random((8, 2), dtype=np.float32), rng.random((8, 16), dtype=np.float32),
                         rng.random(8, dtype=np.float32))
    try:
        durable_empty = durable_writes(empty)
        per_write = np.empty(args.n)
        t_all = time.perf_counter()
        for i in range(args.n):
            t0 = time.perf_counter()
            save_features(feat, cache / f"ab{i:014x}.npz")
            per_write[i] = time.perf_counter() - t0
        total = time.perf_counter() - t_all
        durable_full = durable_writes(cache)
        files = sum(1 for _ in cache.iterdir())
    finally:
        if args.dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    first, last = per_write[:args.window].mean(), per_write[-args.window:].mean()
    result = {
        "hardware": cpu_name(), "python": platform.python_version(), "numpy": np.__version__,
        "cache_writes": args.n, "files_in_folder_at_end": files, "window": args.window,
        "cache_write_ms_first": round(first * 1e3, 4), "cache_write_ms_last": round(last * 1e3, 4),
        "cache_last_over_first": round(last / first, 3), "cache_total_s": round(total, 2),
        "durable_write_ms_empty_folder": round(durable_empty * 1e3, 4),
        "durable_write_ms_full_folder": round(durable_full * 1e3, 4),
        "durable_full_over_empty": round(durable_full / durable_empty, 3),
        "target": "last / first <= 1.5 (cache) and full / empty <= 1.5 (durable)",
    }
    result["met"] = result["cache_last_over_first"] <= 1.5 and result["durable_full_over_empty"] <= 1.5
    write_json(result, args.out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
