"""Bench: GAP on 1M predictions (kit vs naive reference) and `kit folds` on a GLDv2-sized train.csv.

    .venv/bin/python bench/gap_folds.py            # writes bench/results/gap_folds.json

GAP: 1M test ids (30% landmark images from 200k classes, 90% with a prediction, string ids),
timed (best of 3) for kit.metrics.gap (arrays), gap_frames (frames, 5% multi-landmark truth) and
gap_reference (pure Python), once with continuous float32 scores and once with scores rounded to
2 decimals (heavy ties: the id/label tie-break path), plus the submission write/read round trip.
Folds: a generated 4,132,914-row train.csv with 203,094 classes and a long-tail count curve shaped
like GLDv2 (top-2000 classes >= ~183 images, top-18k >= ~50) in a temp dir; read, select + fold,
write, for --top 2000 and --min-images 50; sklearn StratifiedKFold (same allocation, looped per class) on both.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kit.data.folds import make_folds, write_folds  # noqa: E402
from kit.data.train_csv import read_train  # noqa: E402
from kit.atomic import write_json  # noqa: E402
from kit.metrics import gap, gap_frames, gap_reference  # noqa: E402
from kit.submission import read_submission, write_submission  # noqa: E402


CPU = {}  # name -> process CPU seconds: on a shared machine wall time overstates the work


def timed(fn, *a, name=None, repeat=1, **kw):
    """(result, best wall seconds of `repeat` runs); the best CPU seconds go to CPU[name]."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*a, **kw)
        best_wall = min(best_wall, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    if name:
        CPU[name] = round(best_cpu, 3)
    return out, best_wall


def hex_ids(rng, n: int) -> np.ndarray:
    """n unique 16-hex-digit ids (GLDv2 style)."""
    x = np.unique(rng.integers(0, 2**63, int(n * 1.01)))[:n]
    rng.shuffle(x)
    return np.char.mod("%016x", x).astype(object)


def bench_gap(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ids = hex_ids(rng, n)
    true = np.where(rng.random(n) < 0.3, rng.integers(0, 200_000, n), -1)
    pred = np.where(rng.random(n) < 0.5, true, rng.integers(0, 200_000, n))
    pred = np.where(rng.random(n) < 0.9, np.where(pred < 0, rng.integers(0, 200_000, n), pred), -1)
    multi = (true >= 0) & (rng.random(n) < 0.05)
    extra = rng.integers(0, 200_000, n)
    landmarks = [[t, e] if m else ([t] if t >= 0 else []) for t, e, m in zip(true.tolist(), extra.tolist(), multi)]
    sol = pd.DataFrame({"id": ids, "landmarks": landmarks})
    solution = dict(zip(ids.tolist(), landmarks))
    out = {"n_predictions": int((pred >= 0).sum()), "n_ids": n, "n_landmark_images": int((true >= 0).sum())}
    for name, score in (("float32_scores", rng.random(n).astype(np.float32)),
                        ("rounded_scores_heavy_ties", np.round(rng.random(n), 2))):
        g, t_gap = timed(gap, pred, score, true, ids, name=f"{name}.gap", repeat=3)
        sub = pd.DataFrame({"id": ids, "label": pred, "score": score})
        gf, t_frames = timed(gap_frames, sub, sol, name=f"{name}.gap_frames", repeat=3)
        t0 = time.perf_counter()
        preds = {i: (lab, sc) for i, lab, sc in zip(ids.tolist(), pred.tolist(), score.astype(float).tolist())}
        ref = gap_reference(preds, solution)
        t_ref = time.perf_counter() - t0
        single = {i: [t] if t >= 0 else [] for i, t in zip(ids.tolist(), true.tolist())}
        ref_single = gap_reference(preds, single)
        out[name] = {
            "gap_s": round(t_gap, 4), "gap_frames_s": round(t_frames, 4), "reference_s": round(t_ref, 3),
            "speedup_gap_vs_reference": round(t_ref / t_gap, 1),
            "speedup_frames_vs_reference": round(t_ref / t_frames, 1),
            "gap_frames": gf, "reference": ref, "abs_diff_frames": abs(gf - ref),
            "gap": g, "reference_single_truth": ref_single, "abs_diff_gap": abs(g - ref_single),
        }
        print(name, out[name], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "submission.csv"
        _, t_w = timed(write_submission, sub, path)
        back, t_r = timed(read_submission, path, ids)
        out["submission_csv"] = {"write_s": round(t_w, 3), "read_validate_s": round(t_r, 3),
                                 "gap_after_round_trip_equal": gap_frames(back, sol) == gf}
    print("submission_csv", out["submission_csv"], flush=True)
    return out


def long_tail_counts(n_classes: int, n_images: int) -> np.ndarray:
    """GLDv2-like class sizes: c*r^-0.59 through rank 18k (183 at rank 2000, 50 at 18k), then a steeper
    tail whose exponent is solved so the total is n_images; every class has >= 1 image."""
    r = np.arange(1, n_classes + 1, dtype=np.float64)
    head = 183 * (r / 2000) ** -0.59

    def counts(b2):
        tail = 50 * (r / 18000) ** -b2
        return np.maximum(1, np.floor(np.where(r <= 18000, head, tail))).astype(np.int64)

    lo, hi = 0.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if counts(mid).sum() > n_images else (lo, mid)
    c = counts(hi)
    if c.sum() > n_images:  # small configs: shrink the head to fit
        c = np.maximum(1, (c * (n_images / c.sum())).astype(np.int64))
    c[0] += n_images - c.sum()  # exact total
    return c


def bench_folds(n_rows: int, n_classes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    counts = long_tail_counts(n_classes, n_rows)
    landmark_ids = rng.choice(220_000, n_classes, replace=False)
    lid = np.repeat(landmark_ids, counts)
    rng.shuffle(lid)
    desc = np.sort(counts)[::-1]
    out = {"rows": int(n_rows), "classes": int(n_classes), "max_class": int(desc[0]),
           "count_rank_2000": int(desc[min(1999, len(desc) - 1)]),
           "count_rank_18000": int(desc[min(17999, len(desc) - 1)]),
           "classes_with_le_5_images": int((counts <= 5).sum())}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.csv"
        ids = hex_ids(rng, n_rows)
        urls = "https://upload.wikimedia.org/wikipedia/commons/" + pd.Series(ids).str[:2] + "/" + ids + ".jpg"
        t0 = time.perf_counter()
        pd.DataFrame({"id": ids, "url": urls, "landmark_id": lid}).to_csv(path, index=False)
        out["generate_csv_s"] = round(time.perf_counter() - t0, 1)
        out["csv_mb"] = round(path.stat().st_size / 2**20, 1)
        train, out["read_s"] = timed(read_train, path, name="folds.read")
        for name, kw in (("top2000", dict(top=2000)), ("min_images50", dict(min_images=50))):
            folds, t_fold = timed(make_folds, train, n_folds=5, seed=0, name=f"folds.{name}.select_and_fold", **kw)
            _, t_write = timed(write_folds, folds, Path(tmp) / f"{name}.csv", name=f"folds.{name}.write")
            _, t_hold = timed(make_folds, train, holdout=True, seed=0, **kw)
            out[name] = {"classes": int(folds["label"].max() + 1), "images": len(folds),
                         "fold_sizes": np.bincount(folds["fold"]).tolist(), "select_and_fold_s": round(t_fold, 3),
                         "holdout_s": round(t_hold, 3), "write_s": round(t_write, 2),
                         "read_fold_write_s": round(out["read_s"] + t_fold + t_write, 2)}
            print(name, out[name], flush=True)
        from sklearn.model_selection import StratifiedKFold
        for name, kw in (("top2000", dict(top=2000)), ("min_images50", dict(min_images=50))):
            y = make_folds(train, n_folds=5, **kw)["label"].to_numpy()
            t0 = time.perf_counter()
            for _ in StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y):
                pass
            out[f"sklearn_stratifiedkfold_{name}_s"] = round(time.perf_counter() - t0, 2)
            print(f"sklearn {name}", out[f"sklearn_stratifiedkfold_{name}_s"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gap-n", type=int, default=1_000_000)
    ap.add_argument("--rows", type=int, default=4_132_914)
    ap.add_argument("--classes", type=int, default=203_094)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gap_folds.json"))
    args = ap.parse_args()
    load_start = os.getloadavg()
    result = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
              "gap": bench_gap(args.gap_n, args.seed), "folds": bench_folds(args.rows, args.classes, args.seed)}
    result["cpu_seconds"] = CPU
    result["load_average_start_end"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    write_json(result, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
