"""Bench: how much `kit demo`'s figures move with the CPU's thread count, and whether its pick moves.

    python bench/demo_spread.py              # -> bench/results/demo_spread.json (two full demos, ~15 min)
    python bench/demo_spread.py --quick      # -> bench/results/demo_spread.quick.json (`kit demo --quick`)

Training sums floats in an order that depends on the number of threads (and on the CPU's kernels), so the
same seed gives slightly different weights. Each setting runs `kit demo` in a fresh folder with
OMP_NUM_THREADS / MKL_NUM_THREADS = N and records its time, its validation and test GAP, and what the
`select` stage chose with the validation GAP of every candidate.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def demo(threads: int, work: Path, quick: bool) -> dict:
    """One `kit demo` with `threads` intra-op threads -> its figures."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "kit", "demo", "--out-dir", str(work)] + (["--quick"] if quick else [])
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - t0
    choice = json.loads((work / "select" / "choice.json").read_text())
    return {"threads": threads, "seconds": round(seconds, 1),
            "validation_gap": float(re.search(r"^validation GAP ([0-9.]+)", out, re.M).group(1)),
            "gap": float(re.search(r"^GAP ([0-9.]+)", out, re.M).group(1)),
            "choice": choice["choice"], "candidates_validation_gap": choice["validation_gap"],
            "tolerance": choice["tolerance"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread settings to compare (default: 1 2)")
    p.add_argument("--quick", action="store_true", help="`kit demo --quick` (a minute each)")
    p.add_argument("--out", help="result JSON (default bench/results/demo_spread[.quick].json)")
    args = p.parse_args(argv)
    out = Path(args.out or ROOT / "bench" / "results" / f"demo_spread{'.quick' if args.quick else ''}.json")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [demo(n, Path(tmp) / f"t{n}", args.quick) for n in args.threads]
    spread = {k: round(max(r[k] for r in runs) - min(r[k] for r in runs), 6) for k in ("validation_gap", "gap")}
    result = {"command": "python bench/demo_spread.py" + (" --quick" if args.quick else ""),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_average_at_start": load, "runs": runs, "spread": spread,
              "same_choice": len({r["choice"] for r in runs}) == 1}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
