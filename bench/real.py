"""Bench: retrieval-first landmark recognition on real photos (Oxford5k/Paris6k + Caltech-101 non-landmarks).

    .venv/bin/python bench/real.py            # full run -> bench/results/real.json (+ README table)
    .venv/bin/python bench/real.py --quick    # short run -> bench/results/real.quick.json
    python bench/real.py --data-dir /kaggle/input/my-gldv2-subset --work /kaggle/working/real   # any GLDv2 folder

One run, every row measured on the same data, each step a `kit` command run in-process (printed as typed):
 1. data: a GLDv2-layout view of ../shared/data (bench/real_data.py; symlinks, never in the repo) or --data-dir.
    Half of the Caltech distractors join the test set, the other half (distractors.csv) only FITS thresholds.
 2. folds: every labelled class; validation = fold 0 + the fitting distractors (non-landmarks), so validation
    GAP, like test GAP, also rewards ranking non-landmarks low; ensembles' validation scores are cross-fitted.
 3. zero training: `kit predict --checkpoint pretrained` (ImageNet backbone, GeM, no neck) on train/val/test/
    distractors, then `kit retrieve knn` (best neighbour per class) -> the zero-training row; + DBA, + alpha-QE;
    + `kit rerank` (RootSIFT + MAGSAC spatial verification of the top-N neighbours and of the best images of
    the top classes, class score and confidence from similarity and inliers).
 3b. kit's recipe (its default path, still no training): ImageNet tf_efficientnet_lite1 embeddings at 384 px
    + kNN + `kit rerank` (class evidence = inliers beyond the best other class's: the inlier margin; unverified
    rows scored against the other queries of their set: the reference term; also rows without each, from the
    same verified pairs).
 4. fine-tuned: `kit train --config retrieval` (sub-center ArcFace + GeM + FC-BN embedding; kit's preset) on
    fold 0; its classifier row, its kNN row (index = the run's training images; test also adds the
    validation images), + re-rank.
 5. ensembles (`kit ensemble soft`, weights fitted on validation) of classifier + retrieval rows.
 6. non-landmark scoring: `kit filter sift` (inliers against the predicted class's training images) on the
    best ensemble, threshold fitted on validation + the fitting distractors; and the re-rank's own verified
    flag (>= min inliers) for sensitivity/specificity.
 7. scores on test: GAP, top-1 accuracy on landmark images, sensitivity/specificity, seconds per image.
    Validation scores (fold 0) decide which ensemble is "best"; test labels are only read to score.
If ../shared/data is absent (a fresh clone) and no --data-dir is given, it says so and exits 0.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from kit.errors import KitError  # noqa: E402
from kit.io import write_json  # noqa: E402

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_WORK = ROOT / "bench" / "work" / "real"
README = ROOT / "README.md"
TABLE_BEGIN, TABLE_END = "<!-- real.json table: begin -->", "<!-- real.json table: end -->"


@dataclass
class Settings:
    backbone: str = "tf_efficientnet_lite0"
    image_size: int = 224           # training and embedding size
    epochs: int = 8                 # the retrieval preset trains the head only (frozen backbone): cheap
    batch_size: int = 32
    config: str = "retrieval"      # kit preset of the fine-tuned model (falls back to overrides if absent)
    min_images: int = 1             # every labelled class is indexed (a class with one image still counts)
    knn_k: int = 10
    dba: int = 3                    # DBA neighbours of the "+DBA" row
    qe: int = 2                     # alpha-QE neighbours of the "+QE" row
    top_n: int = 10                 # neighbours verified per query
    sift_size: int = 512            # RootSIFT working size (the photos are <= 512 px: native resolution)
    sift_keypoints: int = 1000
    min_inliers: int = 10
    filter_neighbours: int = 3
    max_steps: int = 0
    recipe_backbone: str = "tf_efficientnet_lite1"   # kit's retrieval recipe: ImageNet embeddings, no training,
    recipe_size: int = 384                           # at the photos' scale (chosen on validation, README)


QUICK = Settings(image_size=160, epochs=1, top_n=5, sift_size=384, sift_keypoints=600, recipe_size=256)

FALLBACK_RETRIEVAL = ["model.head=subcenter_arcface", "model.loss=ce", "model.embedding_dim=512", "model.pool=gem",
                      "optim.optimizer=adamw", "optim.lr=0.001", "optim.lr_backbone=0.1", "optim.weight_decay=0.01",
                      "optim.schedule=cosine", "optim.warmup_epochs=1"]


def kit(*argv) -> float:
    """Run one `kit` command in-process (kit.runner); returns its wall seconds."""
    from kit.runner import run_kit

    return run_kit(*argv)


def rounded(x, digits):
    return None if x is None else round(x, digits)


# ----------------------------------------------------------------------------------------- scoring
def score(pred, truth, passed=None) -> dict:
    """GAP, top-1 accuracy on landmark images, sensitivity/specificity of `pred` against a solution frame;
    with `passed` (bool per row of pred) only those rows count as 'predicted landmark'."""
    from kit.submission import predictions_to_frame
    from kit.truth import summarize

    frame = predictions_to_frame(pred)
    frame = frame[frame["id"].isin(set(truth["id"]))]
    ok = None if passed is None else set(np.asarray(pred.ids)[np.asarray(passed, bool)])
    s = summarize(frame, truth, ok)
    out = {k: round(s[k], 6) for k in ("gap", "accuracy", "sensitivity", "specificity")}
    out["sens_at_spec98"] = round(sensitivity_at_specificity(frame, truth, 0.98), 6)
    return out


def sensitivity_at_specificity(frame, truth, specificity: float = 0.98) -> float:
    """Share of landmark images given their right class with a score above the cut that keeps `specificity`
    of the non-landmark images below it (at most floor((1 - specificity) x n) non-landmarks above it): how many
    landmarks a row recognises at a fixed false-positive rate, whatever its score scale."""
    from kit.metrics import match_frames

    m = match_frames(frame, truth)
    landmark = m["is_landmark"].to_numpy()
    score_ = np.where(m["label"].to_numpy() >= 0, m["score"].to_numpy(np.float64), -np.inf)
    neg = np.sort(score_[~landmark])[::-1]
    if not landmark.any():
        return 0.0
    allowed = int(np.floor((1 - specificity) * len(neg) + 1e-9))
    cut = neg[allowed] if allowed < len(neg) else -np.inf
    return float(np.mean(m["correct"].to_numpy()[landmark] & (score_[landmark] > cut)))


def halves(ids) -> np.ndarray:
    """0/1 per id, a fixed split of the validation set for cross-fitted ensemble scores (ids are hashes here;
    the parity of the id's rank keeps it balanced for any ids)."""
    rank = np.argsort(np.argsort(np.asarray(ids).astype(str), kind="stable"), kind="stable")
    return rank % 2


def cross_fitted(fit: list, truth):
    """Soft-ensemble top-1 of aligned predictions `fit` where each half of the ids (`halves`) gets the
    weights fitted on the OTHER half: an out-of-sample validation score for a fitted ensemble."""
    from kit.ensemble.rules import fit_soft_weights, soft_average
    from kit.predictions import concat

    half = halves(fit[0].ids)
    parts = []
    for h in (0, 1):
        other = half != h
        w = fit_soft_weights([p.subset(other) for p in fit], truth[truth["id"].isin(set(fit[0].ids[other]))])
        parts.append(soft_average([p.subset(half == h) for p in fit], w, topk=1))
    return concat(parts)


DEFAULT_ROW = "recipe kNN +spatial re-rank"   # kit's default path, decided before any run


def pick_row(val_preds: dict, truth, default: str = DEFAULT_ROW, n_boot: int = 500, seed: int = 0):
    """The best row on validation, by the one-standard-error rule against kit's default path: the row with
    the highest validation GAP replaces the default only if it leads by more than the standard error of the
    paired difference (bootstrap over validation images). A validation set of a few dozen landmarks is noisy;
    without this a small set picks whichever row got lucky. -> (row, details)."""
    from kit.metrics import gap
    from kit.truth import true_top1

    ids = truth["id"].to_numpy().astype(str)
    arrays = {}
    for key, pred in val_preds.items():
        p = pred.reindex(ids)
        arrays[key] = (p.labels[:, 0], p.scores[:, 0], true_top1(p, truth))
    full = {k: gap(lab, sc, t, ids) for k, (lab, sc, t) in arrays.items()}
    best = max(full, key=full.get)
    if default not in full or best == default:
        return best, {"argmax": best, "rule": "highest validation GAP"}
    samples = np.random.default_rng(seed).integers(0, len(ids), (n_boot, len(ids)))
    diff = np.array([gap(*[a[s] for a in arrays[best]], ids[s]) - gap(*[a[s] for a in arrays[default]], ids[s])
                     for s in samples])
    lead, se = full[best] - full[default], float(diff.std(ddof=1))
    chosen = best if lead > se else default
    return chosen, {"argmax": best, "lead_over_default": round(lead, 6), "paired_se": round(se, 6),
                    "rule": "one-standard-error rule vs kit's default path (paired bootstrap, 500 resamples)"}


def pick_agreement(test_preds: dict, truth, table: dict, picked: str, candidates: list, n_boot: int = 500,
                   seed: int = 0) -> dict:
    """Does validation rank the rows as test does? The picked row agrees when its test GAP is within the
    standard error of its paired difference to the best test row (the pick rule's own tolerance; bootstrap
    over test images); also the rank correlation of validation and test GAP over the candidates."""
    from scipy.stats import spearmanr

    from kit.metrics import gap
    from kit.truth import true_top1

    rows = [k for k in candidates if k in test_preds and "val" in table[k]]
    if picked not in rows:
        return {}
    test = {k: table[k]["test"]["gap"] for k in rows}
    best = max(test, key=test.get)
    ids = truth["id"].to_numpy().astype(str)
    arrays = {}
    for k in (best, picked):
        p = test_preds[k].reindex(ids)
        arrays[k] = (p.labels[:, 0], p.scores[:, 0], true_top1(p, truth))
    lead, se = test[best] - test[picked], 0.0
    if best != picked:
        samples = np.random.default_rng(seed).integers(0, len(ids), (n_boot, len(ids)))
        diff = [gap(*[a[s] for a in arrays[best]], ids[s]) - gap(*[a[s] for a in arrays[picked]], ids[s])
                for s in samples]
        se = float(np.std(diff, ddof=1))
    rho = spearmanr([table[k]["val"]["gap"] for k in rows], [test[k] for k in rows]).correlation
    return {"best_on_test": best, "test_lead_over_picked": round(lead, 6), "test_paired_se": round(se, 6),
            "picked_within_se": bool(lead <= se), "spearman_val_test": round(float(rho), 4), "rows": len(rows)}


# ---------------------------------------------------------------------------------------- the run
def prepare_data(args, work: Path) -> tuple[Path, dict]:
    data, info = prepare_test_data(args, work)
    if args.caltech_validation or not Path(args.shared).is_dir():
        return data, info
    from real_data import add_negatives, validation_negatives

    # validation negatives like a GLR test's non-landmarks: everyday photos, other buildings, landmarks not
    # in the index, from the pools of --shared that are not this run's own photos (bench/real_data.py)
    if args.data_dir:
        own = Path(args.data_dir).resolve() == (Path(args.shared) / "porto").resolve()
        exclude, kept, view = ({"everyday", "porto_landmarks"} if own else set()), None, work / "data_view"
    else:
        from kit.io import read_csv

        ids = read_csv(data / "id_map.csv", dtype={"original": str})
        kept = set(ids.loc[ids["landmark_id"] >= 0, "landmark_id"].astype(int))
        exclude, view = {"other_buildings"}, data
    counts = add_negatives(data, view, validation_negatives(args.shared, exclude, op_kept=kept))
    print(f"  validation negatives: {counts}")
    return view, {**info, "validation_negatives": counts}


def prepare_test_data(args, work: Path) -> tuple[Path, dict]:
    if args.data_dir:
        data = Path(args.data_dir)
        if not (data / "train.csv").is_file():
            raise KitError(f"{data}: no train.csv (--data-dir must be a GLDv2-layout folder)")
        return data, {"source": os.path.relpath(data, ROOT)}  # relative: no absolute path in results
    from real_data import build_layout

    data = work / "data"
    print(f"== 1. GLDv2-layout view of {args.shared} -> {data} (symlinks, ids = sha1 hex; see id_map.csv) ==")
    counts = build_layout(args.shared, data, link=not args.copy, landmarks=args.landmarks)
    print(f"  {counts}")
    return data, {"source": os.path.relpath(args.shared, ROOT), **counts,
                  **({"landmarks": args.landmarks} if args.landmarks else {})}


class Bench:
    """Paths and settings of one run, and the table it fills."""

    def __init__(self, args, s: Settings):
        from kit.truth import load_truth

        self.args, self.s, self.work = args, s, Path(args.work)
        for sub in ("folds", "runs", "predictions", "retrieval", "ensembles", "filters", "cache"):
            if (self.work / sub).exists():
                shutil.rmtree(self.work / sub)
        self.data, self.data_info = prepare_data(args, self.work)
        self.has_distractors = (self.data / "distractors.csv").is_file()
        self.distractor_ids = None
        if self.has_distractors:
            from kit.io import read_csv

            self.distractor_ids = read_csv(self.data / "distractors.csv", dtype={"id": str})["id"].str.strip()
        sol = self.data / "test_solution.csv"
        self.test_truth = load_truth(sol) if sol.is_file() else None
        self.splits = ("val", "test") + (("distractors",) if self.has_distractors else ())
        self.table: dict = {}
        self.val_preds: dict = {}   # row -> its validation predictions (the pick of the best row)
        self.test_preds: dict = {}  # row -> its test predictions (only to score how well the pick agrees)
        self.folds = self.work / "folds" / "wide.csv"
        self.cache = self.work / "cache"

    def common(self, name: str, backbone: str | None = None, image_size: int | None = None) -> list[str]:
        s = self.s
        return [f"name={name}", f"model.backbone={backbone or s.backbone}", f"data.folds_csv={self.folds}",
                f"data.data_dir={self.data}", f"runs_dir={self.work / 'runs'}",
                f"predictions_dir={self.work / 'predictions'}", f"seed={self.args.seed}", f"device={self.args.device}",
                f"data.image_size={image_size or s.image_size}", f"data.batch_size={s.batch_size}",
                f"data.num_workers={self.args.workers}"]

    def pred(self, name: str, split: str) -> Path:
        return self.work / "predictions" / name / f"{split}_fold0.npz"

    def index(self, name: str, split: str) -> list[Path]:
        """Retrieval index of `split`: the run's training images; test also the validation images."""
        return [self.pred(name, "train")] + ([self.pred(name, "val")] if split != "val" else [])

    def val_set(self, files: dict):
        """Validation predictions of a row: fold 0's images + the fitting distractors (non-landmarks), so
        validation GAP, like test GAP, rewards pushing non-landmarks down, not only the right class."""
        from kit.predictions import concat, load_predictions

        parts = [load_predictions(files["val"])]
        if self.has_distractors:   # a row without them would be scored on landmarks only: flattered
            parts.append(load_predictions(files["distractors"]))
        return concat(parts)

    def add(self, key: str, files: dict, kind: str, seconds=None, passed=None, **extra) -> dict:
        """Score a row from its per-split prediction files (val -> val scores, test -> test scores)."""
        from kit.predictions import load_predictions

        row = {"kind": kind, **extra}
        if "val" in files:
            self.val_preds[key] = self.val_set(files)
            row["val"] = score(self.val_preds[key], self.val_truth)
        if self.test_truth is not None and "test" in files:
            self.test_preds[key] = load_predictions(files["test"])
            row["test"] = score(self.test_preds[key], self.test_truth, passed)
        if seconds is not None:
            row["seconds_per_image"] = round(seconds, 4)
        self.table[key] = row
        write_json({"partial": True, "table": self.table}, self.work / "partial.json")  # survives a crash
        t, v = row.get("test", {}), row.get("val", {})
        print(f"  -> {key}: val GAP {v.get('gap', float('nan')):.4f}, test GAP {t.get('gap', float('nan')):.4f}, "
              f"top-1 {t.get('accuracy', float('nan')):.4f}", flush=True)
        return row


def make_folds(b: Bench) -> None:
    from kit.demo import solution_from_folds
    from kit.truth import load_truth

    print("\n== 2. folds (classes with >= N images); validation = fold 0 ==")
    kit("folds", "--train-csv", b.data / "train.csv", "--min-images", b.s.min_images, "--n-folds", 5,
        "--seed", b.args.seed, "--out", b.folds)
    b.val_solution = solution_from_folds(b.folds, 0, b.work / "val_solution.csv")
    if b.has_distractors:   # the validation set: fold 0 + the fitting distractors (empty landmarks)
        import pandas as pd

        from kit.io import read_csv, write_csv

        val = read_csv(b.val_solution, dtype=str, keep_default_na=False)
        extra = pd.DataFrame({"id": b.distractor_ids, "landmarks": ""})
        write_csv(pd.concat([val, extra], ignore_index=True), b.val_solution)
    b.val_truth = load_truth(b.val_solution)


def embed(b: Bench, name: str, extra: list[str], **common) -> dict:
    """`kit predict` of every split with the embeddings' model; -> seconds per test image."""
    n_test, secs = None, {}
    for split in ("train",) + b.splits:
        secs[split] = kit("predict", "--config", b.config, "--fold", 0, "--split", split, *b.common(name, **common),
                          *extra)
    from kit.predictions import load_predictions

    n_test = len(load_predictions(b.pred(name, "test")))
    return {"embed_seconds_per_image": secs["test"] / n_test}


def retrieve(b: Bench, name: str, tag: str, extra: list[str] = ()) -> tuple[dict, float]:
    """`kit retrieve knn` for val and test (and distractors) -> files, seconds per test image."""
    files, per = {}, 0.0
    for split in b.splits:
        out = b.work / "retrieval" / name / f"{tag}_{split}.npz"
        sec = kit("retrieve", "knn", "--index", *b.index(name, split), "--labels", b.folds,
                  "--query", b.pred(name, split), "--out", out, "--k", b.s.knn_k, "--agg", "max", *extra)
        files[split] = out
        if split == "test":
            per = sec / len(b.test_ids)
    return files, per


def rerank(b: Bench, name: str, tag: str, extra: list = ()) -> tuple[dict, float, dict]:
    """`kit rerank` (sift) for val and test -> files, seconds per test image, verified flags per split."""
    files, per, verified = {}, 0.0, {}
    for split in b.splits:
        out = b.work / "retrieval" / name / f"{tag}_{split}.npz"
        # the reference set of the unverified rows' score: the queries' own collection (test: itself;
        # validation: fold 0 + the fitting distractors, the validation set as a whole)
        refs = [] if split == "test" else ["--references", *[b.pred(name, sp) for sp in b.splits if sp != "test"]]
        sec = kit("rerank", "--query", b.pred(name, split), "--index", *b.index(name, split), "--labels", b.folds,
                  "--data-dir", b.data, "--out", out, "--verifier", "sift", "--top-n", b.s.top_n,
                  "--min-inliers", b.s.min_inliers, "--image-size", b.s.sift_size,
                  "--max-keypoints", b.s.sift_keypoints, "--cache-dir", b.cache, "--jobs", 2, *refs, *extra)
        files[split] = out
        side = np.load(str(out)[:-4] + ".inliers.npz")
        verified[split] = side["top_inliers"] >= b.s.min_inliers
        if split == "test":
            per = sec / len(b.test_ids)
    return files, per, verified


def ensemble(b: Bench, key: str, inputs: dict[str, dict]) -> dict:
    """`kit ensemble soft` of the rows' files, simplex weights fitted on the validation set (fold 0 + the
    fitting distractors). Its validation score is cross-fitted (weights fitted on one half of that set,
    scored on the other, both ways), so an ensemble does not win the validation pick by fitting it."""
    from kit.ensemble.rules import fit_soft_weights, run_ensemble

    names = list(inputs)
    fit = [b.val_set(inputs[n]) for n in names]
    ids = fit[0].ids
    fit = [p.reindex(ids) for p in fit]
    weights = fit_soft_weights(fit, b.val_truth)
    cross = cross_fitted(fit, b.val_truth)
    files = {}
    for split in b.splits:
        where = b.work / "ensembles" / key.replace("+", "_").replace(" ", "_") / split   # soft.npz per ensemble
        res = run_ensemble("soft", [inputs[n][split] for n in names], out=where / "soft.csv",
                           ensembles_dir=where, weights=weights, log=lambda *_: None)
        files[split] = res["npz"]
    row = b.add(f"ensemble:{key}", {sp: f for sp, f in files.items() if sp != "val"}, "ensemble", inputs=names,
                weights=[round(float(w), 4) for w in np.ravel(weights)])
    b.val_preds[f"ensemble:{key}"] = cross
    row["val"] = score(cross, b.val_truth)
    row["val_note"] = "cross-fitted: weights fitted on one half of the validation set, scored on the other"
    b.table[f"ensemble:{key}"] = row
    write_json({"partial": True, "table": b.table}, b.work / "partial.json")
    print(f"     cross-fitted val GAP {row['val']['gap']:.4f}")
    return files


def nonlandmark_filter(b: Bench, key: str, files: dict, embeddings_of: str) -> None:
    """`kit filter sift` on an ensemble's files (embeddings of `embeddings_of` attached), fitted on
    validation + the fitting distractors."""
    from kit.predictions import Predictions, load_predictions, save_predictions

    inputs = {}
    for split in b.splits:
        p, e = load_predictions(files[split]), load_predictions(b.pred(embeddings_of, split))
        inputs[split] = save_predictions(Predictions(p.ids, p.labels, p.scores, e.reindex(p.ids).embeddings),
                                         b.work / "filters" / "inputs" / f"{key}_{split}.npz")
    fit_solution = b.work / "fit_solution.csv"   # val truth; distractor ids are absent = non-landmarks
    shutil.copyfile(b.val_solution, fit_solution)
    out = b.work / "filters" / f"{key}.npz"
    t0 = time.perf_counter()
    kit("filter", "sift", inputs["test"], "--out", out, "--fit-on", *[inputs[s] for s in b.splits if s != "test"],
        "--solution", fit_solution, "--data-dir", b.data, "--train-pred", b.pred(embeddings_of, "train"),
        "--train-labels", b.folds, "--cache-dir", b.cache, "--jobs", 2, "--image-size", b.s.sift_size,
        "--max-keypoints", b.s.sift_keypoints, "--neighbours", b.s.filter_neighbours, "--ratio", 0.9,
        "--transform", "homography")
    sec = time.perf_counter() - t0
    import json

    saved = json.loads(out.with_suffix(".filter.json").read_text())
    threshold = saved["stages"][0]["params"].get("threshold")
    rescored = load_predictions(out)
    sig = rescored.scores[:, 0] >= (load_predictions(inputs["test"]).reindex(rescored.ids).scores[:, 0] - 1e-6)
    b.add(f"filter:sift on {key}", {"test": out}, "filter", seconds=sec / len(b.test_ids), passed=sig,
          params=saved["stages"][0]["params"], threshold=threshold)


def run(args) -> dict:
    import torch

    from kit.device import choose_device
    from kit.submission import read_sample_ids

    t_start = time.perf_counter()
    s = QUICK if args.quick else Settings()
    given = {"image_size": args.image_size, "epochs": args.epochs, "max_steps": args.max_steps,
             "backbone": args.backbone, "top_n": args.top_n}
    s = replace(s, **{k: v for k, v in given.items() if v is not None})
    b = Bench(args, s)
    b.test_ids = read_sample_ids(b.data / "sample_submission.csv")
    preset = ROOT / "kit" / "configs" / f"{s.config}.yaml"
    b.config = s.config if preset.is_file() else "top2k"
    tuned_extra = [] if preset.is_file() else FALLBACK_RETRIEVAL
    make_folds(b)

    print("\n== 3. zero training: ImageNet embeddings (kit predict --checkpoint pretrained) + retrieval ==")
    zero = "imagenet"
    info = embed(b, zero, ["--checkpoint", "pretrained"])
    knn0, per = retrieve(b, zero, "knn")
    b.add("zero-training kNN", knn0, "retrieval", seconds=info["embed_seconds_per_image"] + per,
          embeddings="ImageNet " + s.backbone)
    f, per_d = retrieve(b, zero, "knn_dba", ["--dba", s.dba])
    b.add(f"zero-training kNN +DBA{s.dba}", f, "retrieval", seconds=info["embed_seconds_per_image"] + per_d)
    f, per_q = retrieve(b, zero, "knn_qe", ["--qe", s.qe])
    b.add(f"zero-training kNN +QE{s.qe}", f, "retrieval", seconds=info["embed_seconds_per_image"] + per_q)
    rr0, per_r, ver0 = rerank(b, zero, "rerank")
    b.add("zero-training kNN +spatial re-rank", rr0, "rerank", seconds=info["embed_seconds_per_image"] + per_r,
          passed=ver0.get("test"), note="passed = verified (>= min inliers)")

    print(f"\n== 3b. kit's retrieval recipe, no training: ImageNet {s.recipe_backbone} embeddings at "
          f"{s.recipe_size} px + kNN + spatial re-rank ==")
    recipe = "recipe"
    try:
        from kit.models.backbones import packaged_weights_file

        packaged_weights_file(s.recipe_backbone)
    except KitError as e:  # an older install without lite1's weights: the recipe on the zero-training backbone
        print(f"  {e}; the recipe rows use {s.backbone}")
        s = replace(s, recipe_backbone=s.backbone)
    info_r = embed(b, recipe, ["--checkpoint", "pretrained"], backbone=s.recipe_backbone, image_size=s.recipe_size)
    knn_r, per = retrieve(b, recipe, "knn")
    b.add("recipe kNN", knn_r, "retrieval", seconds=info_r["embed_seconds_per_image"] + per,
          embeddings=f"ImageNet {s.recipe_backbone} {s.recipe_size} px")
    rr_r, per_r, ver_r = rerank(b, recipe, "rerank")
    b.add("recipe kNN +spatial re-rank", rr_r, "rerank", seconds=info_r["embed_seconds_per_image"] + per_r,
          passed=ver_r.get("test"), note="kit's default path (evidence fusion): passed = verified (>= min inliers)")
    f, per_n, ver_n = rerank(b, recipe, "rerank_ref", ["--reference-weight", 1])   # pairs are cached
    b.add("recipe kNN +spatial re-rank +reference term", f, "rerank",
          seconds=info_r["embed_seconds_per_image"] + per_n, passed=ver_n.get("test"),
          note="unverified rows lose their mean cosine to the 10 most similar images of their own set; a candidate "
               "of the pick (it reorders the unverified rows: validation decides)")
    f, per_s, ver_s = rerank(b, recipe, "rerank_sum", ["--fusion", "sum", "--reference-weight", 1])
    b.add("recipe kNN +spatial re-rank, summed fusion", f, "ablation",
          seconds=info_r["embed_seconds_per_image"] + per_s, passed=ver_s.get("test"),
          note="the previous default: classes re-ranked by max(sim + inlier term), weak inliers choose between "
               "classes, + reference term; for comparison, not a candidate")
    f, per_m, ver_m = rerank(b, recipe, "rerank_nomargin", ["--margin", 0])   # ablation: raw inlier counts
    b.add("recipe kNN +spatial re-rank, no inlier margin", f, "ablation",
          seconds=info_r["embed_seconds_per_image"] + per_m, passed=ver_m.get("test"),
          note="measures the inlier margin (inliers beyond the best other class's); kit's default path has it")

    print(f"\n== 4. fine-tuned embeddings: kit train --config {b.config} ==")
    tuned = "tuned"
    train_s = kit("train", "--config", b.config, "--fold", 0, *b.common(tuned), *tuned_extra,
                  f"optim.epochs={s.epochs}", f"optim.max_steps_per_epoch={s.max_steps}")
    info_t = embed(b, tuned, [])
    b.add("fine-tuned classifier", {sp: b.pred(tuned, sp) for sp in b.splits}, "model",
          seconds=info_t["embed_seconds_per_image"], train_seconds=round(train_s, 1))
    knn1, per1 = retrieve(b, tuned, "knn")
    b.add("fine-tuned kNN", knn1, "retrieval", seconds=info_t["embed_seconds_per_image"] + per1)
    f, per1d = retrieve(b, tuned, "knn_dba", ["--dba", s.dba])
    b.add(f"fine-tuned kNN +DBA{s.dba}", f, "retrieval", seconds=info_t["embed_seconds_per_image"] + per1d)
    rr1, per1r, ver1 = rerank(b, tuned, "rerank")
    b.add("fine-tuned kNN +spatial re-rank", rr1, "rerank", seconds=info_t["embed_seconds_per_image"] + per1r,
          passed=ver1.get("test"))

    print("\n== 5. ensembles of classifier + retrieval (soft, weights fitted on validation) ==")
    clf = {sp: b.pred(tuned, sp) for sp in b.splits}
    ens_knn = ensemble(b, "classifier+kNN", {"classifier": clf, "kNN": knn1})
    ensemble(b, "classifier+re-rank", {"classifier": clf, "re-rank": rr1})
    ensemble(b, "re-rank+zero-training re-rank", {"re-rank": rr1, "zero re-rank": rr0})
    ensemble(b, "recipe re-rank+fine-tuned re-rank", {"recipe re-rank": rr_r, "re-rank": rr1})

    if b.has_distractors:
        print("\n== 6. non-landmark scoring: kit filter sift, fitted on validation + the fitting distractors ==")
        try:
            nonlandmark_filter(b, "classifier+kNN", ens_knn, tuned)
        except (KitError, OSError, KeyError, IndexError) as e:   # keep every row measured so far
            print(f"  filter step failed: {e}")
            b.table["filter:sift on classifier+kNN"] = {"kind": "filter", "error": str(e)}

    candidates = {k: v for k, v in b.val_preds.items() if b.table[k]["kind"] != "ablation"}
    best, pick = pick_row(candidates, b.val_truth, DEFAULT_ROW)
    print(f"  best row on validation: {best} ({pick})")
    if b.test_truth is not None:
        pick["agreement"] = pick_agreement(b.test_preds, b.test_truth, b.table, best, list(candidates))
        print(f"  validation vs test: {pick['agreement']}")
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
        "quick": args.quick, "settings": asdict(s), "config": b.config, "config_overrides": tuned_extra,
        "data": b.data_info,
        "validation": "fold 0 of folds/wide.csv + the fitting distractors (+ the validation negatives)", "best_on_validation": best,
        "pick": pick, "table": b.table,
        "seconds": round(time.perf_counter() - t_start, 1), "device": str(choose_device(args.device)),
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "notes": ["test = every query image + the test half of the distractors; the other half only fits thresholds",
                  "retrieval index: the run's training images (fold != 0); for test also the validation images",
                  "seconds per image: embedding (kit predict --split test) + retrieval/re-rank, per test image, "
                  "local features extracted cold (no cache) by the first re-rank"],
    }


def table_markdown(result: dict) -> str:
    """The README table from the JSON."""
    lines = ["| row | val GAP | val top-1 | test GAP | test top-1 | sensitivity | specificity | s/image |",
             "|---|---|---|---|---|---|---|---|"]

    def f(x):
        return f"{x:.4f}" if isinstance(x, (int, float)) else ""

    for name, row in result["table"].items():
        v, t = row.get("val", {}), row.get("test", {})
        lines.append(f"| {name} | {f(v.get('gap'))} | {f(v.get('accuracy'))} | {f(t.get('gap'))} | "
                     f"{f(t.get('accuracy'))} | {f(t.get('sensitivity'))} | {f(t.get('specificity'))} | "
                     f"{f(row.get('seconds_per_image'))} |")
    return "\n".join(lines)


def update_readme(result: dict, path: Path = README) -> bool:
    """Replace the table between the README markers (full runs only); False when the markers are absent."""
    text = path.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        return False
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    path.write_text(f"{head}{TABLE_BEGIN}\n{table_markdown(result)}\n{TABLE_END}{tail}")
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short run: 160 px, 1 epoch, 5 neighbours verified at 384 px (real.quick.json)")
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help=f"the shared data folder (default {DEFAULT_SHARED})")
    p.add_argument("--data-dir", help="an existing GLDv2-layout folder instead of building one from --shared")
    p.add_argument("--landmarks", help="only the classes whose name starts with this (e.g. ox_, pa_): a second, "
                                       "smaller real set from the same folder, for a transfer check")
    p.add_argument("--work", default=str(DEFAULT_WORK), help="work folder: data view, runs, predictions (git-ignored default)")
    p.add_argument("--out", help="result JSON (default bench/results/real[.quick].json)")
    p.add_argument("--caltech-validation", action="store_true",
                   help="validation non-landmarks = the data's own distractors only (default: also everyday photos, "
                        "other buildings and landmarks not in the index from --shared, never this run's own photos)")
    p.add_argument("--copy", action="store_true", help="copy the images into the data view instead of symlinking")
    p.add_argument("--backbone", help="timm backbone of both the zero-training and the fine-tuned rows")
    p.add_argument("--image-size", type=int, help="embedding/training size (default 224, quick 160)")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (default 8, quick 1)")
    p.add_argument("--top-n", type=int, help="neighbours verified per query (default 10, quick 5)")
    p.add_argument("--max-steps", type=int, help="cap steps per epoch (0 = full epochs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-readme", action="store_true", help="do not rewrite the README table (full runs do)")
    args = p.parse_args(argv)
    if not args.data_dir and not Path(args.shared).is_dir():
        print(f"{args.shared}: shared data folder absent; nothing to benchmark (give --data-dir for a GLDv2-layout folder)")
        return 0
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"real{'.quick' if args.quick else ''}.json"
    try:
        result = run(args)
    except KitError as e:
        print(f"bench/real.py: error: {e}", file=sys.stderr)
        return 2
    write_json(result, out)
    print("\n" + table_markdown(result))
    print(f"total {result['seconds']:.0f} s; wrote {out}")
    if not args.quick and not args.no_readme and not args.out and update_readme(result):
        print(f"updated the table in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
