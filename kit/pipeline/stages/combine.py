"""Stages that combine earlier predictions: ensembles (`kit ensemble`), a pick on validation, and the last stage:
test predictions -> WORK/submission.csv in Kaggle's format."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.atomic import write_json
from kit.ensemble.rules import ENSEMBLES, fit_soft_weights, load_any
from kit.errors import KitError
from kit.pipeline.stage import choice, ref, stage
from kit.predictions import concat, save_predictions
from kit.submission import read_sample_ids, write_submission
from kit.truth import load_truth, score_gap

PREDICTIONS = ("predict", "retrieve", "rerank", "ensemble", "filter", "select")   # stages writing SPLIT.npz


def validation_set(files: dict):
    """The validation predictions of a stage: the validation fold + the fitting distractors."""
    parts = [load_any(files[s]) for s in ("val", "distractors") if s in files]
    if not parts:
        raise KitError("no validation predictions (a predict stage with a val split)")
    return concat(parts)


def val_gap_of(files: dict, solution) -> float | None:
    """GAP of a stage's validation set against the folds stage's val_solution.csv (None without one)."""
    if "val" not in files or solution is None:
        return None
    return score_gap(validation_set(files), load_truth(solution))


@dataclass
class EnsembleSettings:
    inputs: list[str] = ref(many=True, stages=PREDICTIONS)
    method: str = choice("soft", lambda: ENSEMBLES)
    weights: list[float] = field(default_factory=list)   # [] = fitted on validation (weighted, soft) or equal
    alpha: float = 0.5                                   # boost
    topk: int = 0                                        # soft: classes kept per image (0 = all)
    folds: str = ref("folds", stages=("folds",))


def check_ensemble(s: EnsembleSettings) -> None:
    if len(s.inputs) < 2:
        raise KitError("inputs: an ensemble needs at least 2 earlier stages")
    if s.weights and len(s.weights) != len(s.inputs):
        raise KitError(f"weights: {len(s.weights)} weights for {len(s.inputs)} inputs")


@stage("ensemble", EnsembleSettings, check=check_ensemble)
def ensemble(s: EnsembleSettings, ctx) -> dict:
    """Combine the inputs' predictions per split -> SPLIT.npz, weights.json.
    Report 001's max / correct / boost / weighted, or a soft average; weights fitted on validation unless given."""
    files = [ctx.split_files(i) for i in s.inputs]
    splits = [x for x in ctx.query_splits(files[0]) if all(x in f for f in files)]
    weights = list(s.weights) or None
    shipped = ctx.shipped_file("weights.json")
    if shipped is not None:
        weights = json.loads(shipped.read_text())["weights"]
    elif weights is None and s.method in ("weighted", "soft") and "val" in files[0]:
        truth = load_truth(ctx.of(s.folds)["val_solution"])
        fit = [validation_set(f) for f in files]
        fit = [p.reindex(fit[0].ids) for p in fit]
        weights = ([score_gap(p, truth) for p in fit] if s.method == "weighted"
                   else np.ravel(fit_soft_weights(fit, truth)).tolist())
    kw = {"boost": dict(alpha=s.alpha), "weighted": dict(weights=weights),
          "soft": dict(weights=weights, topk=s.topk or None)}.get(s.method, {})
    out = {}
    for split in splits:
        preds = [load_any(f[split]) for f in files]
        result = ENSEMBLES[s.method](preds, **kw)
        if preds[0].embeddings is not None:   # the first input's embeddings pass through, for filters
            result.embeddings = preds[0].reindex(result.ids).embeddings
        out[split] = save_predictions(result, ctx.dir / f"{split}.npz")
    write_json({"method": s.method, "inputs": s.inputs,
                "weights": None if weights is None else [float(w) for w in weights]}, ctx.dir / "weights.json")
    if weights is not None:
        ctx.log("  weights: " + ", ".join(f"{i}={float(w):.4f}" for i, w in zip(s.inputs, weights)))
    return {"splits": out, "weights": ctx.dir / "weights.json"}


@dataclass
class SelectSettings:
    inputs: list[str] = ref(many=True, stages=PREDICTIONS)
    tolerance: float = 0.005     # a later input replaces an earlier one only if it leads by more than this
    folds: str = ref("folds", stages=("folds",))


@stage("select", SelectSettings, check=lambda s: check_ensemble(EnsembleSettings(inputs=s.inputs)))
def select(s: SelectSettings, ctx) -> dict:
    """Pick the input with the best validation GAP -> choice.json.
    The first listed wins unless another leads by more than `tolerance`: order, not noise, decides a near-tie."""
    shipped = ctx.shipped_file("choice.json")
    if shipped is not None:
        chosen, scores = json.loads(shipped.read_text())["choice"], {}
    else:
        sol = ctx.of(s.folds).get("val_solution")
        scores = {i: val_gap_of(ctx.split_files(i), sol) for i in s.inputs}
        if any(v is None for v in scores.values()):
            raise KitError("select: every input needs validation predictions (a val split) to be compared")
        chosen = functools.reduce(lambda best, i: i if scores[i] > scores[best] + s.tolerance else best, s.inputs)
        for i in s.inputs:
            ctx.log(f"  {i}: validation GAP {scores[i]:.4f}" + ("  <- chosen" if i == chosen else ""))
    write_json({"choice": chosen, "validation_gap": scores, "tolerance": s.tolerance}, ctx.dir / "choice.json")
    return {"splits": {k: Path(v) for k, v in ctx.split_files(chosen).items()}, "choice": chosen}


@dataclass
class SubmissionSettings:
    input: str = ref("", stages=PREDICTIONS)
    folds: str = ref("", stages=("folds",))    # "" = no validation score


def check_submission(s: SubmissionSettings) -> None:
    if not s.input:
        raise KitError("input: name the stage whose test predictions are submitted")


@stage("submission", SubmissionSettings, check=check_submission)
def submission(s: SubmissionSettings, ctx) -> dict:
    """The input's test predictions as WORK/submission.csv, one row per sample id."""
    files = ctx.split_files(s.input)
    if "test" not in files:
        raise KitError(f"stage '{s.input}' has no test predictions (splits: {', '.join(files)})")
    pred = load_any(files["test"])
    out = write_submission(pred.reindex(read_sample_ids(ctx.data / "sample_submission.csv")),
                           ctx.work / "submission.csv")
    val = val_gap_of(files, ctx.of(s.folds).get("val_solution")) if s.folds else None
    return {"submission": out, "predictions": files["test"], "val_gap": val}
