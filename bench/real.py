"""Bench: the whole kit on real photos: Oxford5k/Paris6k landmarks mixed with Caltech-101 non-landmarks.

    .venv/bin/python bench/real.py            # full run (CPU: see README for time) -> bench/results/real.json
    .venv/bin/python bench/real.py --quick    # smoke run, lite0 only, small images -> real.quick.json
    python bench/real.py --data-dir /kaggle/input/my-gldv2-subset --work /kaggle/working/real   # Kaggle

Steps, each a `kit` command run in-process (printed as typed, like `kit demo`):
 1. data: a GLDv2-layout view of ../shared/data built by bench/real_data.py (symlinks; never in the repo)
    under --work (default bench/work/real, git-ignored); or --data-dir, an existing GLDv2-layout folder
    (train.csv, train/, test/, sample_submission.csv, optional test_solution.csv and distractors.csv).
    Half of the 300 Caltech distractors go to the test set, the other (fixed) half is only used to FIT
    filter thresholds, so no test image is seen while fitting.
 2. folds: all classes with >= 2 images (Keble has 1) and a "2k-like" top-10 subset; validation =
    fold 0 of the wide file (nested folds: the top-10 model never trained on it either).
 3. train: tf_efficientnet_lite0/1/2 on the wide folds + lite0 on the top-10 folds (for `correct`),
    fine-tuned from the packaged ImageNet weights; `kit train-delf` on lite0.
 4. predict: val, test, distractors (every model), train (lite0: the retrieval index of the filters).
 5. ensembles: max, correct, boost, weighted, soft; weights fitted on validation.
 6. filters on the best ensemble (by validation GAP; lite0's embeddings attached, since ensembles carry
    none): sift, delf (packaged backbone, feature-norm scores), delf-trained, distractor, centroid,
    delf+distractor; fitted on validation + the fitting distractors, timed on the test set (cold cache).
 7. scores on test: GAP, top-1 accuracy on landmark images, sensitivity/specificity (Mail.ru's offline
    test: landmark images kept / non-landmark images rejected), seconds per image.
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from kit.errors import KitError  # noqa: E402
from kit.io import write_json  # noqa: E402

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_WORK = ROOT / "bench" / "work" / "real"
METHODS = ("max", "correct", "boost", "weighted", "soft")


@dataclass
class Settings:
    image_size: int = 192
    epochs: int = 6
    batch_size: int = 32
    lr: float = 2e-3
    backbones: tuple = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
    top: int = 10                 # "2k-like" subset: the K most frequent classes
    min_images: int = 2           # "18k-like" subset: classes with >= N images
    delf_epochs: int = 3
    filters: tuple = ("sift", "delf", "delf-trained", "distractor", "centroid", "delf+distractor")
    filter_image_size: int = 224  # local-feature working size (kit's default 256; 224 keeps the CPU run short)
    max_steps: int = 0


QUICK = Settings(image_size=128, epochs=2, backbones=("tf_efficientnet_lite0",), delf_epochs=1,
                 filters=("sift", "delf-trained", "distractor", "delf-trained+distractor"), filter_image_size=160)


def kit(*argv, reuse=None) -> float | None:
    """Run one `kit` command in-process (kit.demo.kit); returns its wall seconds. With `reuse` (an
    output of the command that already exists, --reuse) the command is skipped and None returned."""
    from kit.runner import run_kit

    if reuse and Path(reuse).exists():
        print(f"\n(reused {reuse}: skipped kit {argv[0]})")
        return None
    t0 = time.perf_counter()
    run_kit(*argv)
    return time.perf_counter() - t0


def rounded(x, digits):
    return None if x is None else round(x, digits)


def short(backbone: str) -> str:
    return backbone.replace("tf_efficientnet_", "")


# ----------------------------------------------------------------------------------------- scoring
def score(pred, truth, passed=None) -> dict:
    """GAP, top-1 accuracy on landmark images, sensitivity/specificity of `pred` against a solution frame.

    An image counts as 'predicted landmark' when it has a label and (for a filter) passed it."""
    from kit.metrics import gap_frames, match_frames, sensitivity_specificity
    from kit.submission import predictions_to_frame

    frame = predictions_to_frame(pred)
    frame = frame[frame["id"].isin(set(truth["id"]))]
    m = match_frames(frame, truth)
    predicted = m["label"].to_numpy() >= 0
    if passed is not None:
        ok = dict(zip(pred.ids, np.asarray(passed, bool)))
        predicted &= np.array([ok.get(i, False) for i in m["id"]])
    landmark = m["is_landmark"].to_numpy()
    sens, spec = sensitivity_specificity(predicted, landmark)
    acc = float(m["correct"].to_numpy()[landmark].mean()) if landmark.any() else 0.0
    return {"gap": round(float(gap_frames(frame, truth)), 6), "accuracy": round(acc, 6),
            "sensitivity": round(sens, 6), "specificity": round(spec, 6)}


def val_scores(pred, truth) -> dict:
    """GAP and top-1 accuracy on the validation images (all landmarks)."""
    from kit.truth import score_gap
    from kit.metrics import match_frames
    from kit.submission import predictions_to_frame

    truth = truth[truth["id"].isin(set(pred.ids))]
    m = match_frames(predictions_to_frame(pred.reindex(truth["id"])), truth)
    return {"gap": round(score_gap(pred, truth), 6), "accuracy": round(float(m["correct"].mean()), 6)}


# ----------------------------------------------------------------------------------------- filters
def filter_settings(spec: str, base: dict, work: Path, delf_path: Path | None, image_size: int) -> tuple[str, dict]:
    """(chain spec for kit.filter, settings): 'delf-trained' = delf with the trained attention head."""
    chain = spec.replace("delf-trained", "delf")
    ext = {"image_size": image_size}
    tag = "delf" if "delf" in spec else "sift"
    if "delf-trained" in spec:
        ext["delf"], tag = str(delf_path), "delf-trained"
    return chain, {**base, "extractor_kw": ext, "cache_dir": str(work / "cache" / tag)}


def run_filter(spec: str, chain_spec: str, settings: dict, test, fit, fit_truth, out: Path) -> dict:
    """Fit the chain on `fit` (val + fitting distractors), rescore `test`, time both (what `kit filter` does)."""
    from kit.filters.chain import build_filter, save_filter
    from kit.truth import true_top1
    from kit.predictions import save_predictions

    chain = build_filter(chain_spec, "demote", settings)
    t0 = time.perf_counter()
    chain.fit_rescore(fit, true_top1(fit, fit_truth))
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rescored = chain.rescore(test)
    test_s = time.perf_counter() - t0
    save_predictions(rescored, out)
    save_filter(chain, out.with_suffix(".filter.json"))
    passed = np.logical_and.reduce([f.last_passed for f in chain.filters])
    fitted = {f.name: {k: float(v) for k, v in f.params.items()} for f in chain.filters}
    print(f"  {spec}: fitted {fitted}; fit {fit_s:.1f} s ({len(fit)} images), "
          f"test {test_s:.1f} s = {test_s / len(test):.4f} s/image", flush=True)
    return {"out": rescored, "passed": passed, "params": fitted, "fit_seconds": round(fit_s, 2),
            "seconds_per_image": round(test_s / len(test), 4)}


def concat(preds):
    """Top-1 of several prediction sets stacked (the fit set of a filter), embeddings kept."""
    from kit.predictions import Predictions

    emb = [p.embeddings for p in preds]
    return Predictions(np.concatenate([p.ids for p in preds]), np.concatenate([p.labels[:, :1] for p in preds]),
                       np.concatenate([p.scores[:, :1] for p in preds]),
                       None if any(e is None for e in emb) else np.concatenate(emb))


def with_embeddings(pred, source):
    """`pred` (an ensemble: no embeddings) with the embeddings `source` has for the same ids."""
    from kit.predictions import Predictions

    return Predictions(pred.ids, pred.labels, pred.scores, source.reindex(pred.ids).embeddings)


# ---------------------------------------------------------------------------------------- the run
def prepare_data(args, work: Path) -> tuple[Path, dict]:
    if args.data_dir:
        data = Path(args.data_dir)
        if not (data / "train.csv").is_file():
            raise KitError(f"{data}: no train.csv (--data-dir must be a GLDv2-layout folder)")
        return data, {"source": str(data)}
    from real_data import build_layout

    data = work / "data"
    print(f"== 1. GLDv2-layout view of {args.shared} -> {data} (symlinks, ids = sha1 hex; see id_map.csv) ==")
    t0 = time.perf_counter()
    counts = build_layout(args.shared, data, link=not args.copy)
    print(f"  {counts} ({time.perf_counter() - t0:.1f} s)")
    print(f"  test = every query + {counts['test_distractors']} distractors; the other "
          f"{counts['fit_distractors']} distractors ({data}/distractors.csv) only fit filter thresholds")
    return data, {"source": str(args.shared), **counts}


@dataclass
class Bench:
    """Where one run reads and writes, and what it trains (shared by the step functions below)."""

    args: argparse.Namespace
    s: Settings
    data: Path
    work: Path
    has_distractors: bool
    test_truth: object          # solution frame, or None when the data has no test_solution.csv
    models: dict                # name -> (backbone, folds CSV)
    order: list                 # model names, base first, its top-K twin second
    data_info: dict = field(default_factory=dict)

    def path(self, what: str) -> Path:
        return self.work / what

    @property
    def base(self) -> str:
        return self.order[0]

    @property
    def splits(self) -> tuple:
        return ("val", "test") + (("distractors",) if self.has_distractors else ())

    def overrides(self, name: str, folds_csv: Path | None = None) -> list[str]:
        """`kit train/predict` key=value list for one model (predict: every model on the wide folds)."""
        s, backbone = self.s, self.models[name][0]
        return [f"name={name}", f"model.backbone={backbone}", f"data.folds_csv={folds_csv or self.models[name][1]}",
                f"data.data_dir={self.data}", f"runs_dir={self.path('runs')}", f"submissions_dir={self.path('submissions')}",
                f"seed={self.args.seed}", f"device={self.args.device}", f"data.image_size={s.image_size}",
                f"data.batch_size={s.batch_size}", f"data.num_workers={self.args.workers}", "data.augment=light",
                "model.loss=ce", "model.label_smoothing=0.1", "optim.optimizer=adamw", f"optim.lr={s.lr}",
                "optim.lr_backbone=0.25", "optim.weight_decay=0.01", "optim.schedule=cosine", "optim.warmup_epochs=0.5",
                f"optim.epochs={s.epochs}", f"optim.max_steps_per_epoch={s.max_steps}"]

    def reuse(self, path: Path):
        return path if self.args.reuse else None


def setup(args) -> Bench:
    from kit.truth import load_truth

    s = QUICK if args.quick else Settings()
    given = {"image_size": args.image_size, "epochs": args.epochs, "max_steps": args.max_steps, "top": args.top,
             "min_images": args.min_images, "batch_size": args.batch_size, "filter_image_size": args.filter_image_size,
             "backbones": tuple(args.backbones) if args.backbones else None}
    s = replace(s, **{k: v for k, v in given.items() if v is not None})
    work = Path(args.work)
    for sub in ("folds", "runs", "submissions", "ensembles", "filters", "cache"):
        if not args.reuse and (work / sub).exists():
            shutil.rmtree(work / sub)
    data, info = prepare_data(args, work)
    has_dis = (data / "distractors.csv").is_file()
    truth = load_truth(data / "test_solution.csv") if (data / "test_solution.csv").is_file() else None
    if not has_dis:
        print("no distractors.csv: filters are fitted on validation images only, no distractor filter")
    base = short(s.backbones[0])
    models = {base: (s.backbones[0], work / "folds" / "wide.csv"),
              f"{base}-top{s.top}": (s.backbones[0], work / "folds" / "top.csv")}
    models.update({short(b): (b, work / "folds" / "wide.csv") for b in s.backbones[1:]})
    return Bench(args, s, data, work, has_dis, truth, models, list(models), info)


def make_folds(b: Bench) -> Path:
    """Wide (>= N images) and top-K folds; returns the validation solution (fold 0 of the wide file)."""
    from kit.demo import solution_from_folds

    print("\n== 2. folds ==")
    for flag, value, name in (("--min-images", b.s.min_images, "wide"), ("--top", b.s.top, "top")):
        kit("folds", "--train-csv", b.data / "train.csv", flag, value, "--folds", 5, "--seed", b.args.seed,
            "--out", b.path("folds") / f"{name}.csv")
    return solution_from_folds(b.path("folds") / "wide.csv", 0, b.path("val_solution.csv"))


def train_models(b: Bench) -> tuple[dict, Path | None]:
    """Every model on fold 0, then (if a filter needs it) the DELF attention on the base model."""
    print("\n== 3. train (fold 0), DELF attention on the base model ==")
    seconds = {}
    for name in b.order:
        seconds[name] = kit("train", "--config", "top2k", "--fold", 0, *b.overrides(name),
                            reuse=b.reuse(b.path("runs") / name / "fold0" / "best.pt"))
    if not any("delf-trained" in f for f in b.s.filters):
        return seconds, None
    delf = b.path("runs") / b.base / "fold0" / "delf.pt"
    seconds["delf-attention"] = kit("train-delf", "--config", "top2k", "--fold", 0, "--epochs", b.s.delf_epochs,
                                    *b.overrides(b.base), reuse=b.reuse(delf))
    return seconds, delf


def predict_models(b: Bench) -> tuple[dict, dict]:
    """files[split][model] and each model's seconds per test image."""
    from kit.ensemble.rules import load_any

    print("\n== 4. predict: the common validation fold, test, distractors; base model also train ==")
    files, per_image = {sp: {} for sp in b.splits + ("train",)}, {}
    for name in b.order:
        # every model predicts fold 0 of the wide folds file: one validation set for every ensemble
        over = b.overrides(name, b.path("folds") / "wide.csv")
        for split in b.splits + (("train",) if name == b.base else ()):
            files[split][name] = b.path("submissions") / name / f"{split}_fold0.npz"
            sec = kit("predict", "--config", "top2k", "--fold", 0, "--split", split, *over,
                      reuse=b.reuse(files[split][name]))
            if split == "test":
                per_image[name] = None if sec is None else sec / len(load_any(files[split][name]))
    return files, per_image


def run_ensembles(b: Bench, files: dict, val_solution: Path, val_truth) -> tuple[dict, dict]:
    """Rows of the table for every method, and its ensemble files per split (weights fitted on validation)."""
    from kit.ensemble.rules import run_ensemble

    print("\n== 5. ensembles, fitted on validation ==")
    rows, ens_files = {}, {}
    for method in METHODS:
        inputs = b.order[:2] if method == "correct" else b.order  # correct: [wide base, top-K model]
        fit = dict(fit_on=[files["val"][m] for m in inputs], solution=val_solution) if method in ("weighted", "soft") else {}
        res = {sp: run_ensemble(method, [files[sp][m] for m in inputs], out=b.path("ensembles") / sp / f"{method}.csv",
                                ensembles_dir=b.path("ensembles") / sp, log=lambda *_: None, **fit) for sp in b.splits}
        ens_files[method] = {sp: res[sp]["npz"] for sp in b.splits}
        row = {"kind": "ensemble", "inputs": inputs, "val": val_scores(res["val"]["predictions"], val_truth)}
        if res["val"]["weights"] is not None:
            row["weights"] = [round(float(w), 4) for w in np.ravel(res["val"]["weights"])]
        if b.test_truth is not None:
            row["test"] = score(res["test"]["predictions"], b.test_truth)
        rows[f"ensemble:{method}"] = row
        print(f"  {method}: val GAP {row['val']['gap']:.4f}" + (f", test GAP {row['test']['gap']:.4f}" if "test" in row else ""))
    return rows, ens_files


def run_filters(b: Bench, on: str, ens_files: dict, files: dict, delf: Path | None, val_solution: Path, val_truth) -> dict:
    """Every filter of the settings on ensemble `on` (the base model's embeddings attached), fitted on
    validation + the fitting distractors; each printed as the equivalent `kit filter` command."""
    from kit.ensemble.rules import load_any
    from kit.predictions import save_predictions

    print(f"\n== 6. non-landmark filters on ensemble:{on}, fitted on validation"
          f"{' + the fitting distractors' if b.has_distractors else ''} ==")
    inputs = {sp: save_predictions(with_embeddings(load_any(ens_files[on][sp]), load_any(files[sp][b.base])),
                                   b.path("filters") / "inputs" / f"{on}_{sp}.npz") for sp in b.splits}
    test, fit = load_any(inputs["test"]), concat([load_any(inputs[sp]) for sp in b.splits if sp != "test"])
    base = dict(data_dir=str(b.data), train_pred=str(files["train"][b.base]), train_labels=str(b.data / "train.csv"),
                n_jobs=2, **({"distractors": str(files["distractors"][b.base])} if b.has_distractors else {}))
    rows, caches_used = {}, set()
    for spec in [f for f in b.s.filters if b.has_distractors or "distractor" not in f]:
        chain, settings = filter_settings(spec, base, b.work, delf, b.s.filter_image_size)
        local = "delf" in chain or "sift" in chain
        cached = local and settings["cache_dir"] in caches_used  # an earlier filter extracted these features
        if local:
            caches_used.add(settings["cache_dir"])
        out = b.path("filters") / f"{spec.replace('+', '_')}.npz"
        argv = ["filter", chain, inputs["test"], "--out", out, "--fit-on", *[inputs[sp] for sp in b.splits if sp != "test"],
                "--solution", val_solution, "--data-dir", b.data, "--train-pred", base["train_pred"],
                "--train-labels", base["train_labels"], "--cache-dir", settings["cache_dir"], "--jobs", 2,
                "--image-size", b.s.filter_image_size]
        argv += ["--distractors", base["distractors"]] if "distractors" in base else []
        argv += ["--delf", delf] if "delf-trained" in spec else []
        print(f"\n$ kit {' '.join(shlex.quote(str(a)) for a in argv)}", flush=True)
        r = run_filter(spec, chain, settings, test, fit, val_truth, out)
        row = {"kind": "filter", "on": f"ensemble:{on}", "params": r["params"], "fit_seconds": r["fit_seconds"],
               "filter_seconds_per_image": r["seconds_per_image"], "features_cached": cached}
        if b.test_truth is not None:
            row["test"] = score(r["out"], b.test_truth, r["passed"])
        rows[f"filter:{spec}"] = row
    return rows


def run(args) -> dict:
    """All steps (module doc); returns the result written to the JSON."""
    import torch

    from kit.device import choose_device
    from kit.ensemble.rules import load_any
    from kit.truth import load_truth

    t_start = time.perf_counter()
    b = setup(args)
    val_solution = make_folds(b)
    val_truth = load_truth(val_solution)
    train_s, delf = train_models(b)
    files, per_image = predict_models(b)
    table = {}
    for name in b.order:
        row = {"kind": "model", "backbone": b.models[name][0], "val": val_scores(load_any(files["val"][name]), val_truth),
               "predict_seconds_per_image": rounded(per_image[name], 4), "train_seconds": rounded(train_s[name], 1)}
        if b.test_truth is not None:
            row["test"] = score(load_any(files["test"][name]), b.test_truth)
        table[name] = row
    rows, ens_files = run_ensembles(b, files, val_solution, val_truth)
    table.update(rows)
    best = max(METHODS, key=lambda m: table[f"ensemble:{m}"]["val"]["gap"])
    print(f"  best on validation: {best}")
    table.update(run_filters(b, best, ens_files, files, delf, val_solution, val_truth))
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
        "quick": args.quick, "settings": asdict(b.s), "data": b.data_info, "validation": "fold 0 of folds/wide.csv",
        "base_model": b.base, "base_validation": table[b.base]["val"], "delf_attention_seconds": rounded(train_s.get("delf-attention"), 1),
        "best_ensemble": best, "table": table, "seconds": round(time.perf_counter() - t_start, 1),
        "device": str(choose_device(args.device)), "reused": bool(args.reuse),
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "notes": ["test = every query image + the test half of the distractors; the other half only fits filters",
                  "ensembles carry no embeddings: the filters use the base model's embeddings for the same ids",
                  "seconds per image: whole `kit predict --split test` call / images (model load included); "
                  "filters: rescoring the test set; its images' local features not yet cached unless marked cached"],
    }


def print_table(result: dict) -> None:
    head = f"{'model / ensemble / filter':<34}{'val GAP':>8}{'val acc':>8}{'GAP':>8}{'acc':>8}{'sens':>7}{'spec':>7}{'s/img':>8}"
    print("\n" + head + "\n" + "-" * len(head))
    for name, row in result["table"].items():
        v, t = row.get("val", {}), row.get("test", {})
        sec = row.get("predict_seconds_per_image", row.get("filter_seconds_per_image"))
        name += "*" if row.get("features_cached") else ""

        def f(x, w):
            return f"{x:>{w}.4f}" if isinstance(x, float) else f"{'':>{w}}"

        print(f"{name:<34}{f(v.get('gap'), 8)}{f(v.get('accuracy'), 8)}{f(t.get('gap'), 8)}{f(t.get('accuracy'), 8)}"
              f"{f(t.get('sensitivity'), 7)}{f(t.get('specificity'), 7)}{f(sec, 8)}")
    print("GAP/acc/sens/spec on the test set; s/img = prediction (models) or filter (filters) seconds per test image;\n"
          "* = its local features were already extracted by an earlier filter; "
          f"best ensemble on validation: {result['best_ensemble']}; total {result['seconds']:.0f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: lite0 only, 128 px, 2 epochs (real.quick.json)")
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help=f"the shared data folder (default {DEFAULT_SHARED})")
    p.add_argument("--data-dir", help="an existing GLDv2-layout folder instead of building one from --shared")
    p.add_argument("--work", default=str(DEFAULT_WORK), help="work folder: data view, runs, predictions (git-ignored default)")
    p.add_argument("--out", help="result JSON (default bench/results/real[.quick].json)")
    p.add_argument("--copy", action="store_true", help="copy the images into the data view instead of symlinking")
    p.add_argument("--reuse", action="store_true", help="keep earlier runs/predictions/caches under --work (timings lie)")
    p.add_argument("--backbones", nargs="+", help="override the backbones (first = base model)")
    p.add_argument("--image-size", type=int, help="training/prediction size (default 192, quick 128)")
    p.add_argument("--epochs", type=int, help="default 6, quick 2")
    p.add_argument("--batch-size", type=int, help="default 32")
    p.add_argument("--top", type=int, help='"2k-like" model: the K most frequent classes (default 10)')
    p.add_argument("--min-images", type=int, help="wide folds: classes with >= N images (default 2)")
    p.add_argument("--filter-image-size", type=int, help="local-feature working size (default 224, quick 160)")
    p.add_argument("--max-steps", type=int, help="cap steps per epoch (0 = full epochs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    p.add_argument("--seed", type=int, default=0)
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
    print_table(result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
