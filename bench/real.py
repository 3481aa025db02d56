"""Bench: retrieval-first landmark recognition on real photos (Oxford5k/Paris6k + Caltech-101 non-landmarks).

    .venv/bin/python bench/real.py            # full run -> bench/results/real.json (+ its table in bench/README.md)
    .venv/bin/python bench/real.py --quick    # short run -> bench/results/real.quick.json
    python bench/real.py --data-dir /kaggle/input/my-gldv2-subset --work-dir /kaggle/working/real   # any GLDv2 folder

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
import json
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

from kit.commands import renamed  # noqa: E402
from kit.errors import KitError  # noqa: E402
from kit.atomic import write_json

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_WORK = ROOT / "bench" / "work" / "real"
README = ROOT / "bench" / "README.md"   # its real.json table (bench/tables.py writes the others)
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
    candidates: int = 10            # nearest images verified per query
    sift_size: int = 512            # RootSIFT working size (the photos are <= 512 px: native resolution)
    sift_keypoints: int = 1000
    min_inliers: int = 10
    filter_candidates: int = 3
    max_steps: int = 0
    recipe_backbone: str = "tf_efficientnet_lite1"   # kit's retrieval recipe: ImageNet embeddings, no training,
    recipe_size: int = 384                           # at the photos' scale (chosen on validation, README)


QUICK = Settings(image_size=160, epochs=1, candidates=5, sift_size=384, sift_keypoints=600, recipe_size=256)

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

    m = match_frames(frame, getattr(truth, "frame", truth))   # a kit.truth.Truth or its frame
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
    """The best row on validation, by a two-standard-error rule against kit's default path: the row with
    the highest validation GAP replaces the default only if it leads by more than twice the standard error of
    the paired difference (bootstrap over validation images), i.e. only on a lead unlikely to be luck. A
    validation set of a few dozen landmarks is noisy: with one standard error, ensembles with a briefly
    fine-tuned model won small sets on validation and lost top-1 on test. -> (row, details)."""
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
    chosen = best if lead > 2 * se else default
    return chosen, {"argmax": best, "lead_over_default": round(lead, 6), "paired_se": round(se, 6),
                    "rule": "two-standard-error rule vs kit's default path (paired bootstrap, 500 resamples)"}


def pick_agreement(test_preds: dict, truth, table: dict, picked: str, candidates: list, n_boot: int = 500,
                   seed: int = 0) -> dict:
    """Does validation rank the rows as test does? The picked row agrees when its test GAP is within the
    standard error of its paired difference to the best test row (half the pick rule's tolerance; bootstrap
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
        from kit.csvfiles import read_csv

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
    """Paths and settings of one run, the rows' recipes and the table they fill. Every row is a recipe run
    by kit's one runner (kit.pipeline) in one work folder, so the stages rows share (folds, embeddings,
    training) run once and the row picked on validation is a recipe file `kit run` reproduces."""

    def __init__(self, args, s: Settings):
        from kit.truth import load_truth

        self.args, self.s, self.work = args, s, Path(args.work_dir)
        for sub in ("repro",) if args.keep_work else ("pipeline", "repro", "cache"):
            if (self.work / sub).exists():
                shutil.rmtree(self.work / sub)
        self.data, self.data_info = prepare_data(args, self.work)
        sol = self.data / "test_solution.csv"
        self.test_truth = load_truth(sol).frame if sol.is_file() else None
        self.table, self.val_preds, self.recipes = {}, {}, {}
        self.stages: dict[str, dict] = {}     # stage id -> its {STAGE: settings} item, in the order added
        self.test_preds: dict = {}  # row -> its test predictions (only to score how well the pick agrees)
        self.cache = self.work / "cache"

    def stage(self, kind: str, sid: str, **settings) -> str:
        self.stages[sid] = {kind: {"id": sid, **settings}}
        return sid

    def recipe(self, last: str) -> dict:
        """The recipe of a row: the stages `last` needs, in the order added, then its submission."""
        from kit.pipeline.recipe import load_recipe

        need, todo = set(), [last, "folds"]   # every stage reads the folds (their default `folds: folds`)
        while todo:
            sid = todo.pop()
            if sid not in need:
                need.add(sid)
                (settings,) = self.stages[sid].values()
                todo += [v for k, v in settings.items() if k != "id" and isinstance(v, str) and v in self.stages]
                todo += [x for v in settings.values() if isinstance(v, list) for x in v if x in self.stages]
        stages = [item for sid, item in self.stages.items() if sid in need]
        data = {"name": "real", "seed": self.args.seed, "device": self.args.device, "workers": self.args.workers,
                "cache_dir": str(self.cache),
                "stages": stages + [{"submission": {"input": last, "folds": "folds"}}]}
        load_recipe(data)   # a bad row fails before anything runs
        return data

    def run_row(self, key: str, last: str, kind: str, passed=None, **extra) -> dict:
        """Run the row's recipe (stages done for earlier rows are skipped) and score its last stage."""
        from kit.pipeline.runner import run_recipe

        recipe = self.recipe(last)
        result = run_recipe(recipe, self.data, self.work / "pipeline", log=quiet)
        self.recipes[key] = recipe
        files = result["outputs"][last]["splits"]
        fresh = sum(result["seconds"].get(sid, 0.0) for sid in self.cost_of(last))
        return self.add(key, files, kind, seconds=fresh / len(self.test_ids), passed=passed, **extra)

    def recipe_outputs(self, sid: str) -> dict:
        """{split: prediction file} of a finished stage of the shared work folder."""
        from kit.pipeline.runner import finished

        return finished(self.work / "pipeline" / sid, None)["splits"]

    def cost_of(self, last: str) -> list[str]:
        """The stages whose time a row's seconds per image count: its own and the ones it needs."""
        return [next(iter(item.values()))["id"] for item in self.recipe(last)["stages"][:-1]]

    def val_set(self, files: dict):
        from kit.pipeline.stages.combine import validation_set

        return validation_set(files)

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


def quiet(line: str) -> None:
    """The runner's progress lines, stage starts and times only."""
    if line.startswith("["):
        print(f"  {line}", flush=True)


def verified(b: Bench, rerank_id: str, split: str = "test"):
    side = np.load(b.work / "pipeline" / rerank_id / f"{split}.inliers.npz")
    return side["top_inliers"] >= b.s.min_inliers


def note_fusion(b: Bench, key: str, sid: str) -> None:
    """Record in the row the fusion each split used and, for the calibrated fusion, the fitted model."""
    folder = b.work / "pipeline" / sid
    row = b.table[key]
    row["fusion_used"] = {p.name.split(".")[0]: json.loads(p.read_text()).get("fusion")
                          for p in sorted(folder.glob("*.seconds.json"))}
    if (folder / "calibration.json").is_file():
        model = json.loads((folder / "calibration.json").read_text())["model"]
        row["calibration"] = None if model is None else {
            k: model[k] for k in ("features", "coef", "intercept", "examples", "positives")}


def rerank_settings(s: Settings, **extra) -> dict:
    return {"verifier": "sift", "candidates": s.candidates, "min_inliers": s.min_inliers, "image_size": s.sift_size,
            "max_keypoints": s.sift_keypoints, "threads": 2, **extra}


def predict_settings(b: Bench, backbone: str, size: int, **extra) -> dict:
    return {"config": b.config, "set": {"model.backbone": backbone, "data.image_size": size,
                                        "data.batch_size": b.s.batch_size, **extra.pop("set", {})}, **extra}


def ensemble(b: Bench, key: str, inputs: list[str]) -> str:
    """A soft ensemble of rows' last stages, simplex weights fitted on the validation set (fold 0 + the
    fitting distractors). Its validation score is cross-fitted (weights fitted on one half of that set,
    scored on the other, both ways), so an ensemble does not win the validation pick by fitting it."""
    from kit.pipeline.stages.combine import validation_set

    sid = b.stage("ensemble", "ens_" + "_".join(inputs), inputs=inputs, method="soft")
    row = b.run_row(f"ensemble:{key}", sid, "ensemble", inputs=inputs)
    fit = [validation_set(b.recipe_outputs(i)) for i in inputs]
    fit = [p.reindex(fit[0].ids) for p in fit]
    weights = json.loads((b.work / "pipeline" / sid / "weights.json").read_text())["weights"]
    cross = cross_fitted(fit, b.val_truth)
    b.val_preds[f"ensemble:{key}"] = cross
    row.update(weights=[round(float(w), 4) for w in weights], val=score(cross, b.val_truth),
               val_note="cross-fitted: weights fitted on one half of the validation set, scored on the other")
    write_json({"partial": True, "table": b.table}, b.work / "partial.json")
    print(f"     cross-fitted val GAP {row['val']['gap']:.4f}")
    return sid


def run(args) -> dict:
    import torch

    from kit.device import choose_device
    from kit.pipeline import stages  # noqa: F401  (registers the stages)
    from kit.submission import read_sample_ids
    from kit.truth import load_truth

    t_start = time.perf_counter()
    s = QUICK if args.quick else Settings()
    given = {"image_size": args.image_size, "epochs": args.epochs, "max_steps": args.max_steps,
             "backbone": args.backbone, "candidates": args.candidates}
    s = replace(s, **{k: v for k, v in given.items() if v is not None})
    b = Bench(args, s)
    b.test_ids = read_sample_ids(b.data / "sample_submission.csv")
    b.config = s.config
    print("\n== 2. folds (classes with >= N images); validation = fold 0 + the fitting distractors ==")
    b.stage("folds", "folds", min_images=s.min_images, n_folds=5)
    from kit.pipeline.runner import run_recipe

    run_recipe({"name": "folds", "seed": args.seed, "stages": [b.stages["folds"]]}, b.data, b.work / "pipeline",
               log=quiet)
    b.val_solution = b.work / "pipeline" / "folds" / "val_solution.csv"
    b.val_truth = load_truth(b.val_solution).frame

    print("\n== 3. zero training: ImageNet embeddings + kNN / re-rank ==")
    b.stage("predict", "imagenet", checkpoint="pretrained", **predict_settings(b, s.backbone, s.image_size))
    knn = {"embeddings": "imagenet", "k": s.knn_k, "agg": "max"}
    b.stage("retrieve", "imagenet_knn", **knn)
    b.run_row("zero-training kNN", "imagenet_knn", "retrieval", embeddings="ImageNet " + s.backbone)
    b.stage("retrieve", "imagenet_knn_dba", **knn, dba=s.dba)
    b.run_row(f"zero-training kNN +DBA{s.dba}", "imagenet_knn_dba", "retrieval")
    b.stage("retrieve", "imagenet_knn_qe", **knn, qe=s.qe)
    b.run_row(f"zero-training kNN +QE{s.qe}", "imagenet_knn_qe", "retrieval")
    b.stage("rerank", "imagenet_rerank", embeddings="imagenet", **rerank_settings(s))
    b.run_row("zero-training kNN +spatial re-rank", "imagenet_rerank", "rerank",
              note="passed = verified (>= min inliers)")
    if b.test_truth is not None:
        b.table["zero-training kNN +spatial re-rank"]["test"] = score(load_test(b, "imagenet_rerank"), b.test_truth,
                                                                     verified(b, "imagenet_rerank"))
    note_fusion(b, "zero-training kNN +spatial re-rank", "imagenet_rerank")

    print(f"\n== 3b. kit's retrieval recipe, no training: ImageNet {s.recipe_backbone} embeddings at "
          f"{s.recipe_size} px + kNN + spatial re-rank ==")
    b.stage("predict", "recipe", checkpoint="pretrained", **predict_settings(b, s.recipe_backbone, s.recipe_size))
    b.stage("retrieve", "recipe_knn", **{**knn, "embeddings": "recipe"})
    b.run_row("recipe kNN", "recipe_knn", "retrieval", embeddings=f"ImageNet {s.recipe_backbone} {s.recipe_size} px")
    for key, sid, extra, kind, note in (
            ("recipe kNN +spatial re-rank", "recipe_rerank", {}, "rerank",
             "kit's default path (calibrated fusion: a logistic model of P(right class) over kNN similarity and "
             "margin, inliers and inlier margin, kNN-class and verified flags and the reference similarity, fitted "
             "on validation; validation scored cross-fitted): passed = verified (>= min inliers)"),
            ("recipe kNN +spatial re-rank, evidence fusion", "recipe_rerank_evidence", {"fusion": "evidence"},
             "rerank", "the previous default: verification only lifts the kNN score, another class only on an "
             "inlier margin >= 10; a candidate of the pick"),
            ("recipe kNN +spatial re-rank +reference term", "recipe_rerank_ref",
             {"fusion": "evidence", "reference_weight": 1}, "rerank",
             "evidence fusion; unverified rows lose their mean cosine to the 10 most similar images of their own "
             "set; a candidate of the pick (it reorders the unverified rows: validation decides)"),
            ("recipe kNN +spatial re-rank, summed fusion", "recipe_rerank_sum", {"fusion": "sum", "reference_weight": 1},
             "ablation", "classes re-ranked by max(sim + inlier term), weak inliers choose between classes, + "
             "reference term (the default before the evidence fusion); for comparison, not a candidate"),
            ("recipe kNN +spatial re-rank, no inlier margin", "recipe_rerank_nomargin",
             {"fusion": "evidence", "margin": 0}, "ablation",
             "evidence fusion on raw inlier counts: measures the inlier margin (inliers beyond the best other "
             "class's)")):
        b.stage("rerank", sid, embeddings="recipe", **rerank_settings(s, **extra))
        b.run_row(key, sid, kind, note=note)
        if b.test_truth is not None:
            b.table[key]["test"] = score(load_test(b, sid), b.test_truth, verified(b, sid))
        note_fusion(b, key, sid)

    print(f"\n== 4. fine-tuned embeddings: kit train --config {b.config} ==")
    b.stage("train", "tuned_model", config=b.config, set={
        "model.backbone": s.backbone, "data.image_size": s.image_size, "data.batch_size": s.batch_size,
        "optim.epochs": s.epochs, "optim.max_steps_per_epoch": s.max_steps})
    b.stage("predict", "tuned", model="tuned_model", **predict_settings(b, s.backbone, s.image_size))
    b.run_row("fine-tuned classifier", "tuned", "model")
    b.stage("retrieve", "tuned_knn", **{**knn, "embeddings": "tuned"})
    b.run_row("fine-tuned kNN", "tuned_knn", "retrieval")
    b.stage("retrieve", "tuned_knn_dba", **{**knn, "embeddings": "tuned"}, dba=s.dba)
    b.run_row(f"fine-tuned kNN +DBA{s.dba}", "tuned_knn_dba", "retrieval")
    b.stage("rerank", "tuned_rerank", embeddings="tuned", **rerank_settings(s))
    b.run_row("fine-tuned kNN +spatial re-rank", "tuned_rerank", "rerank")
    if b.test_truth is not None:
        b.table["fine-tuned kNN +spatial re-rank"]["test"] = score(load_test(b, "tuned_rerank"), b.test_truth,
                                                                  verified(b, "tuned_rerank"))
    note_fusion(b, "fine-tuned kNN +spatial re-rank", "tuned_rerank")

    print("\n== 5. ensembles of classifier + retrieval (soft, weights fitted on validation) ==")
    ens_knn = ensemble(b, "classifier+kNN", ["tuned", "tuned_knn"])
    ensemble(b, "classifier+re-rank", ["tuned", "tuned_rerank"])
    ensemble(b, "re-rank+zero-training re-rank", ["tuned_rerank", "imagenet_rerank"])
    ensemble(b, "recipe re-rank+fine-tuned re-rank", ["recipe_rerank", "tuned_rerank"])

    if (b.data / "distractors.csv").is_file():
        print("\n== 6. non-landmark scoring: the sift filter, fitted on validation + the fitting distractors ==")
        key = "filter:sift on classifier+kNN"
        try:
            b.stage("filter", "filter_sift", input=ens_knn, name="sift", embeddings="tuned",
                    candidates=s.filter_candidates, image_size=s.sift_size,
                    max_keypoints=s.sift_keypoints)
            row = b.run_row(key, "filter_sift", "filter")
            saved = json.loads((b.work / "pipeline" / "filter_sift" / "filter.json").read_text())
            rescored, before = load_test(b, "filter_sift"), load_test(b, ens_knn)
            sig = rescored.scores[:, 0] >= (before.reindex(rescored.ids).scores[:, 0] - 1e-6)
            if b.test_truth is not None:
                row["test"] = score(rescored, b.test_truth, sig)
            row.update(params=saved["stages"][0]["params"], threshold=saved["stages"][0]["params"].get("threshold"))
        except (KitError, OSError, KeyError, IndexError) as e:   # keep every row measured so far
            print(f"  filter step failed: {e}")
            b.table[key] = {"kind": "filter", "error": str(e)}

    candidates = {k: v for k, v in b.val_preds.items() if b.table[k]["kind"] != "ablation"}
    best, pick = pick_row(candidates, b.val_truth, DEFAULT_ROW)
    print(f"  best row on validation: {best} ({pick})")
    if b.test_truth is not None:
        pick["agreement"] = pick_agreement(b.test_preds, b.test_truth, b.table, best, list(candidates))
        print(f"  validation vs test: {pick['agreement']}")
    repro = reproduce(b, best, args)
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
        "quick": args.quick, "settings": asdict(s), "config": b.config,
        "data": b.data_info,
        "validation": "fold 0 + the fitting distractors (+ the validation negatives)", "best_on_validation": best,
        "pick": pick, "recipe": repro, "table": b.table,
        "seconds": round(time.perf_counter() - t_start, 1), "device": str(choose_device(args.device)),
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "notes": ["test = every query image + the test half of the distractors; the other half only fits thresholds",
                  "retrieval index: the training images (fold != 0); for test also the validation images",
                  "every row is a recipe run by kit's runner in one work folder; a stage shared by rows runs once, "
                  "so seconds per image count each row's stages as measured when they first ran "
                  "(local features extracted cold by the first re-rank)"],
    }


def load_test(b: Bench, sid: str):
    from kit.predictions import load_predictions

    return load_predictions(b.recipe_outputs(sid)["test"])


def reproduce(b: Bench, row: str, args) -> dict:
    """Write the picked row's recipe (bench/results/real[.quick].recipe.yaml) and run it with `kit run`'s
    runner in a fresh work folder (the local-feature cache shared): its test GAP must equal the row's."""
    from kit.pipeline.recipe import save_recipe
    from kit.pipeline.runner import run_recipe

    recipe = dict(b.recipes[row])
    recipe = {**recipe, "name": "real-picked", "description": f"bench/real.py's pick on validation: {row}"}
    recipe.pop("cache_dir", None)
    path = Path(args.recipe_out) if args.recipe_out else ROOT / "bench" / "results" / (
        f"real{'.quick' if args.quick else ''}.recipe.yaml")
    save_recipe(recipe, path)
    print(f"\n== 7. kit run {os.path.relpath(path, ROOT)} --data-dir {os.path.relpath(b.data, ROOT)} (fresh work folder) ==")
    t0 = time.perf_counter()
    result = run_recipe(path, b.data, b.work / "repro", overrides=[f"cache_dir={b.cache}"], log=quiet)
    gap = result.get("gap")
    want = b.table[row].get("test", {}).get("gap")
    same = gap is not None and want is not None and abs(round(gap, 6) - want) < 1e-9
    print(f"  kit run: test GAP {gap:.6f}; the row: {want:.6f}; equal: {same}")
    return {"file": os.path.relpath(path, ROOT), "row": row, "kit_run_test_gap": round(gap, 6),
            "row_test_gap": want, "equal": same, "seconds": round(time.perf_counter() - t0, 1)}


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
    p.add_argument("--work-dir", default=str(DEFAULT_WORK), help="work folder: data view, runs, predictions (git-ignored default)")
    p.add_argument("--out", help="result JSON (default bench/results/real[.quick].json)")
    p.add_argument("--caltech-validation", action="store_true",
                   help="validation non-landmarks = the data's own distractors only (default: also everyday photos, "
                        "other buildings and landmarks not in the index from --shared, never this run's own photos)")
    p.add_argument("--copy", action="store_true", help="copy the images into the data view instead of symlinking")
    p.add_argument("--backbone", help="timm backbone of both the zero-training and the fine-tuned rows")
    p.add_argument("--image-size", type=int, help="embedding/training size (default 224, quick 160)")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (default 8, quick 1)")
    p.add_argument("--candidates", type=int, help="nearest images verified per query (default 10, quick 5)")
    p.add_argument("--max-steps", type=int, help="cap steps per epoch (0 = full epochs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-readme", action="store_true", help="do not rewrite the README table (full runs do)")
    p.add_argument("--keep-work", action="store_true",
                   help="reuse the stages a previous run of this work folder finished (their seconds are then 0)")
    p.add_argument("--recipe-out", help="the picked row's recipe (default bench/results/real[.quick].recipe.yaml)")
    renamed(p, top_n="--candidates", work="--work-dir")
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
