"""The README's main job: the whole kit pipeline on the embedded synthetic data, each step a `kit` command.

It prints every command as a user would type it, so the demo doubles as a tutorial. The validation
set shared by both models is fold 0 of the wider ("18k-like") folds file: folds are assigned per class,
so the narrower ("2k-like") model never trained on those images either.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.atomic import write_csv, write_json


@dataclass
class DemoSize:
    classes: int = 60
    images: int = 3000
    test_images: int = 600
    distractors: int = 200
    size: int = 128
    image_size: int = 112
    top: int = 15             # "2k-like": the K most frequent classes
    min_images: int = 20      # "18k-like": every class with >= N images
    epochs: int = 3
    max_steps: int = 0
    batch_size: int = 48


QUICK = DemoSize(classes=8, images=240, test_images=60, distractors=20, size=64, image_size=64, top=4,
                 min_images=12, epochs=1, max_steps=3, batch_size=16)

METHODS = ("max", "correct", "boost", "weighted", "soft")


def solution_from_folds(folds_csv: Path, fold: int, out: Path) -> Path:
    """The validation truth in Kaggle's solution format (id,landmarks) for rows of `fold`."""
    df = pd.read_csv(folds_csv, dtype={"id": str})
    df = df[df["fold"] == fold]
    return write_csv(pd.DataFrame({"id": df["id"], "landmarks": df["landmark_id"].astype(str)}), out)


def write_submission_file(pred, path: Path, data: Path) -> Path:
    """Submission CSV with one row per sample id (ids without a prediction stay empty)."""
    from kit.submission import read_sample_ids, write_submission

    return write_submission(pred.reindex(read_sample_ids(data / "sample_submission.csv")), path)


def run_demo(out: str | Path = "demo", quick: bool = False, seed: int = 0) -> dict:
    from kit.ensemble.rules import load_any, run_ensemble
    from kit.predictions import concat
    from kit.runner import run_kit as kit
    from kit.truth import gap_top1, load_truth, score_gap, true_top1

    s = QUICK if quick else DemoSize()
    out = Path(out)
    data, folds, runs, subs, ens = out / "data", out / "folds", out / "runs", out / "predictions", out / "ensembles"
    t_start = time.perf_counter()

    print("== 1. synthetic GLDv2-layout data ==")
    kit("synth", "--out", data, "--classes", s.classes, "--images", s.images, "--test-images", s.test_images,
        "--distractors", s.distractors, "--size", s.size, "--seed", seed, "--reuse")

    print("\n== 2. folds: a 2k-like (top-K classes) and an 18k-like (classes with >= N images) subset ==")
    kit("folds", "--train-csv", data / "train.csv", "--top", s.top, "--n-folds", 5, "--seed", seed,
        "--clean-csv", data / "train_clean.csv", "--out", folds / "top2k.csv")
    kit("folds", "--train-csv", data / "train.csv", "--min-images", s.min_images, "--n-folds", 5, "--seed", seed,
        "--clean-csv", data / "train_clean.csv", "--out", folds / "top18k.csv")
    val_solution = solution_from_folds(folds / "top18k.csv", 0, out / "val_solution.csv")

    common = [f"data.data_dir={data}", f"runs_dir={runs}", f"predictions_dir={subs}", f"seed={seed}",
              f"data.image_size={s.image_size}", f"data.batch_size={s.batch_size}", f"optim.epochs={s.epochs}",
              f"optim.max_steps_per_epoch={s.max_steps}", "optim.schedule=cosine", "optim.lr=0.02",
              "optim.warmup_epochs=0.3"]
    models = {"top18k": folds / "top18k.csv", "top2k": folds / "top2k.csv"}

    print("\n== 3. train two models on fold 0 ==")
    for name, folds_csv in models.items():
        kit("train", "--config", name, "--fold", 0, f"name={name}", f"data.folds_csv={folds_csv}", *common)

    print("\n== 4. predict: the common validation set, distractors and test (18k-like model also train) ==")
    # Both models predict fold 0 of the wider folds file: one validation set for every ensemble.
    for name in models:
        for split in ("val", "distractors", "test") + (("train",) if name == "top18k" else ()):
            kit("predict", "--config", name, "--fold", 0, "--split", split, f"name={name}",
                f"data.folds_csv={models['top18k']}", *common)
    files = {split: [subs / name / f"{split}_fold0.npz" for name in models] for split in ("val", "distractors", "test")}
    test_truth = load_truth(data / "test_solution.csv")
    val_truth = load_truth(val_solution)

    print("\n== 5. ensembles (report 001's four + soft), fitted on validation, scored on val and test ==")
    table = {name: {"val_gap": score_gap(load_any(f), val_truth), "test_gap": score_gap(load_any(t), test_truth)}
             for name, f, t in zip(models, files["val"], files["test"])}
    for method in METHODS:
        fit = dict(fit_on=files["val"], solution=val_solution) if method in ("weighted", "soft") else {}
        res = {}
        for split in ("val", "distractors", "test"):
            res[split] = run_ensemble(method, files[split], out=ens / split / f"{method}.csv",
                                      ensembles_dir=ens / split, log=lambda *_: None, **fit)
        table[f"ensemble:{method}"] = {"val_gap": score_gap(res["val"]["predictions"], val_truth),
                                       "test_gap": score_gap(res["test"]["predictions"], test_truth)}
    print(f"\n{'model / ensemble':<22}{'val GAP':>10}{'test GAP':>10}")
    for name, row in table.items():
        print(f"{name:<22}{row['val_gap']:>10.4f}{row['test_gap']:>10.4f}")
    best = max(METHODS, key=lambda m: table[f"ensemble:{m}"]["val_gap"])
    print(f"best ensemble on validation: {best}")

    print("\n== 6. non-landmark filters, fitted on validation + distractors, applied to test ==")
    fit_solution = out / "fit_solution.csv"   # val truth; distractor ids are absent = non-landmarks
    write_csv(pd.read_csv(val_solution, dtype=str), fit_solution)
    before = table[f"ensemble:{best}"]["test_gap"]
    fitted = {}
    for chain in ("delf+distractor", "sift+distractor"):
        tag = chain.split("+")[0]
        kit("filter", chain, ens / "test" / f"{best}.npz", "--out", out / f"filtered_{tag}.npz",
            "--fit-on", ens / "val" / f"{best}.npz", ens / "distractors" / f"{best}.npz",
            "--solution", fit_solution, "--data-dir", data,
            "--train-pred", subs / "top18k" / "train_fold0.npz", "--train-labels", data / "train.csv",
            "--distractors", subs / "top18k" / "distractors_fold0.npz",
            "--cache-dir", out / "cache", "--image-size", s.size, "--submission", out / f"submission_{tag}.csv")
        stages = json.loads((out / f"filtered_{tag}.filter.json").read_text())["stages"]
        fit_gap = stages[-1].get("fit", {}).get("gap_after", float("nan"))
        test_gap = score_gap(load_any(out / f"submission_{tag}.csv"), test_truth)
        fitted[tag] = fit_gap
        table[f"filter:{chain}"] = {"val_gap": fit_gap, "test_gap": test_gap}
    print("\n== 7. retrieval-first: kNN over the training images + spatial re-rank (sim + inliers) ==")
    # index = the 18k-like run's training images (+ its validation images for test); the val and
    # distractor re-ranks give the fit GAP on the same fit set as the filters
    emb = subs / "top18k"
    index = {"val": [emb / "train_fold0.npz"], "distractors": [emb / "train_fold0.npz", emb / "val_fold0.npz"],
             "test": [emb / "train_fold0.npz", emb / "val_fold0.npz"]}
    rr = {}
    for split in ("val", "distractors", "test"):
        rr[split] = out / "rerank" / f"{split}.npz"
        kit("rerank", "--query", emb / f"{split}_fold0.npz", "--index", *index[split], "--labels", folds / "top18k.csv",
            "--data-dir", data, "--out", rr[split], "--top-n", 5, "--image-size", s.size, "--cache-dir", out / "cache",
            "--ratio", 0.8, "--transform", "affine", "--robust", "ransac",
            *([] if split == "test" else ["--references", emb / "val_fold0.npz", emb / "distractors_fold0.npz"]))
    fit_rr = concat([load_any(rr["val"]), load_any(rr["distractors"])], k=1)   # the fit set, top-1
    fitted["rerank"] = gap_top1(fit_rr, true_top1(fit_rr, load_truth(fit_solution)))  # as the filters' fit GAP
    table["retrieval:rerank"] = {"val_gap": fitted["rerank"], "test_gap": score_gap(load_any(rr["test"]), test_truth)}
    write_submission_file(load_any(rr["test"]), out / "submission_rerank.csv", data)
    # choose the final step on the fit set (validation + distractors), never on test
    pick = max(fitted, key=fitted.get)
    submission = out / "submission.csv"
    write_csv(pd.read_csv(out / f"submission_{pick}.csv", dtype=str, keep_default_na=False), submission)
    after = score_gap(load_any(submission), test_truth)
    print(f"\n{'filter / retrieval':<26}{'fit GAP':>10}{'test GAP':>10}   (fit = validation + distractors)")
    for name, row in table.items():
        if name.startswith(("filter:", "retrieval:")):
            print(f"{name:<26}{row['val_gap']:>10.4f}{row['test_gap']:>10.4f}")
    print(f"chosen on the fit set: {pick if pick == 'rerank' else pick + '+distractor'}")
    write_json({"table": table, "best_ensemble": best, "filter": pick if pick == "rerank" else f"{pick}+distractor",
                "gap_before_filter": before, "gap_after_filter": after,
                "seconds": round(time.perf_counter() - t_start, 1), "quick": quick}, out / "comparison.json")
    print(f"test GAP before filter {before:.6f} -> after filter {after:.6f}")

    print("\n== 8. score the submission ==")
    kit("score", submission, data / "test_solution.csv", "--sample", data / "sample_submission.csv")
    print("\n== 9. an HTML report of the run ==")
    kit("report", "--runs-dir", runs, "--predictions-dir", subs, "--ensembles-dir", ens / "test", "--data-dir", data,
        "--solution", data / "test_solution.csv", "--folds-csv", folds / "top18k.csv", "--comparison",
        out / "comparison.json", "--filtered", rr["test"] if pick == "rerank" else out / f"filtered_{pick}.npz",
        "--out", out / "report" / "index.html")
    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f} s; files under {out}/")
    # The README promises the final GAP on the last line.
    print(f"GAP {after:.6f}")
    return {"table": table, "gap": after, "best": best}
