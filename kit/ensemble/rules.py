"""Ensembles of prediction files: report 001's four rules (max, correct, boost, weighted) plus `soft`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kit.ensemble.files import latest_test_files, load_any, validation_gap
from kit.ensemble.soft import align, check_weights, fit_soft_weights, soft_average
from kit.errors import KitError
from kit.predictions import Predictions, save_predictions
from kit.truth import load_truth, score_gap
from kit.registry import Registry

__all__ = ["ENSEMBLES", "align", "fit_soft_weights", "load_any", "run_ensemble", "soft_average"]


def _top1(preds: list[Predictions]) -> tuple[np.ndarray, np.ndarray]:
    """Stacked top-1 labels and scores, [M, N]; score 0 where a model has no prediction."""
    labels = np.stack([p.labels[:, 0] for p in preds])
    scores = np.stack([p.scores[:, 0] for p in preds])
    return labels, np.where(labels >= 0, scores, 0.0).astype(np.float32)


def _base(labels: np.ndarray, order: list[int]) -> np.ndarray:
    """Per id, the index of the first model in `order` that predicted it (order[0] if none did)."""
    base = np.full(labels.shape[1], order[0], np.int64)
    for j in reversed(order):
        base = np.where(labels[j] >= 0, j, base)
    return base


def _pick(a: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Per id (column of a [M, N]), the value of the model `model[id]`."""
    return a[model, np.arange(a.shape[1])]


def _result(ids, labels, scores) -> Predictions:
    labels = np.asarray(labels, np.int64)
    return Predictions(ids, labels, np.where(labels >= 0, scores, 0.0))


def ens_max(preds: list[Predictions]) -> Predictions:
    """Per id, the (label, score) with the highest score among the models that predicted it."""
    preds = align(preds)
    labels, scores = _top1(preds)
    best = np.argmax(np.where(labels >= 0, scores, -np.inf), axis=0)  # first model wins ties
    return _result(preds[0].ids, _pick(labels, best), _pick(scores, best))


def ens_correct(preds: list[Predictions]) -> Predictions:
    """preds[0] = top-18k base, preds[1] = top-2k: where both agree on top-1 the score is preds[1]'s, else the base."""
    if len(preds) != 2:
        raise KitError(f"ensemble correct: needs exactly 2 inputs (top-18k base, top-2k model), got {len(preds)}")
    preds = align(preds)
    labels, scores = _top1(preds)
    base = _base(labels, [0, 1])
    agree = (labels[0] == labels[1]) & (labels[0] >= 0)
    return _result(preds[0].ids, _pick(labels, base), np.where(agree, scores[1], _pick(scores, base)))


def ens_boost(preds: list[Predictions], alpha: float = 0.5) -> Predictions:
    """Base preds[0]; score = s0 + alpha * (sum of the other models' scores for the same label)."""
    preds = align(preds)
    labels, scores = _top1(preds)
    base = _base(labels, list(range(len(preds))))
    label = _pick(labels, base)
    same = (labels == label) & (label >= 0) & (np.arange(len(preds))[:, None] != base)
    return _result(preds[0].ids, label, _pick(scores, base) + alpha * (scores * same).sum(axis=0))


def ens_weighted(preds: list[Predictions], weights=None) -> Predictions:
    """Base = highest-weight model that predicted the id; score = sum of w_j * s_j of those agreeing / sum of weights."""
    preds = align(preds)
    w = check_weights(weights, len(preds))
    labels, scores = _top1(preds)
    order = sorted(range(len(preds)), key=lambda j: -w[j])  # stable: earlier file wins ties
    label = _pick(labels, _base(labels, order))
    agree = (labels == label) & (label >= 0)
    return _result(preds[0].ids, label, (w[:, None] * scores * agree).sum(axis=0) / w.sum())


ENSEMBLES = Registry("ensemble", {"max": ens_max, "correct": ens_correct, "boost": ens_boost, "weighted": ens_weighted,
                                  "soft": soft_average})  # weights given (`fit_soft_weights`) or equal


def run_ensemble(method: str, files=(), out: str | Path = "submission.csv", weights=None, alpha: float = 0.5,
                 solution=None, fit_on=(), topk: int | None = None, step: float = 0.1,
                 ensembles_dir: str | Path = "ensembles", predictions_dir: str | Path = "predictions",
                 runs_dir: str | Path = "runs", log=print) -> dict:
    """Ensemble FILES (or each experiment's latest test file), print GAPs, write ensembles/<method>.npz and `out`."""
    ENSEMBLES.check(method, "")
    truth = load_truth(solution) if solution else None
    discovered = not files
    files = [Path(f) for f in files] or latest_test_files(predictions_dir)
    if len(files) < 2:
        where = f"found in {predictions_dir}" if discovered else "given"
        raise KitError(f"ensemble: needs at least 2 prediction files, {len(files)} {where} "
                       f"(an ensemble of one would just copy it; use `kit to-submission` for a single file)")
    preds = [load_any(f) for f in files]
    fit = [load_any(f) for f in fit_on]
    if fit and len(fit) != len(preds):
        raise KitError(f"ensemble: {len(fit)} --fit-on files for {len(preds)} inputs (same models, same order)")
    scored = fit or preds
    if weights is None and method in ("weighted", "soft"):
        weights = default_weights(method, files, scored, truth, discovered, runs_dir, step)
    kw = {"boost": dict(alpha=alpha), "weighted": dict(weights=weights),
          "soft": dict(weights=weights, topk=topk)}.get(method, {})
    if weights is not None:
        log("weights: " + "  ".join(f"{f.name}={w:.4f}" for f, w in zip(files, np.ravel(weights))))
    gaps = {}
    if truth is not None:
        names = [f"{Path(f).parent.name}/{Path(f).name}" for f in (fit_on or files)]
        gaps = {n: score_gap(p, truth) for n, p in zip(names, scored)}
        gaps[f"ensemble:{method}"] = score_gap(ENSEMBLES[method](scored, **kw), truth)
        for name, g in gaps.items():
            log(f"GAP {g:.6f}  {name}")
    result = ENSEMBLES[method](preds, **kw)
    if preds[0].embeddings is not None:  # FILES[0]'s embeddings pass through, for filters and retrieval
        result.embeddings = preds[0].reindex(result.ids).embeddings
    from kit.submission import write_submission  # pandas: not imported for `kit --help`

    npz = save_predictions(result, Path(ensembles_dir) / f"{method}.npz")
    csv = write_submission(result, out)
    log(f"wrote {npz} and {csv} ({len(result)} ids, {int((result.labels[:, 0] >= 0).sum())} predicted)")
    return {"predictions": result, "npz": npz, "csv": csv, "weights": weights, "gaps": gaps, "files": files}


def default_weights(method: str, files, scored, truth, discovered: bool, runs_dir, step: float):
    """weighted: each model's GAP (or validation GAP); soft: fitted simplex weights; None (equal) without a truth."""
    if method == "weighted" and truth is None and discovered:
        weights = [validation_gap(f.parent, None, runs_dir) for f in files]
        missing = [str(f.parent) for f, w in zip(files, weights) if w is None]
        if missing:
            raise KitError(f"{missing[0]}: no val_fold*.npz or oof_fold*.npz to weight its test predictions")
        return weights
    if truth is None:
        return None
    if method == "weighted":
        return [score_gap(p, truth) for p in scored]
    return fit_soft_weights(scored, truth, step=step)
