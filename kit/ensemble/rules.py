"""Ensembles of prediction files: report 001's four rules (max, correct, boost, weighted) plus `soft`.

Every rule is a pure function `ENSEMBLES[name](preds: list[Predictions], **kw) -> Predictions` over
inputs first aligned to the union of their ids (`align`): an id a model did not predict has an empty
row there (label -1), so it is never dropped. The "base" of a rule is the first model, in the rule's
order, that predicted the id; when the named base model did not predict an id, the next one that did
takes its place (so the output has a prediction wherever any input has one).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from kit.errors import KitError
from kit.predictions import Predictions, load_predictions, top_per_row
from kit.truth import load_truth, score_gap, truth_for


def load_any(path: str | Path) -> Predictions:
    """A prediction .npz, or a submission CSV (`id,landmarks` = "label score") as k=1 Predictions."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_predictions(path)
    if path.suffix == ".csv":
        from kit.submission import read_submission

        df = read_submission(path)
        return Predictions(df["id"].to_numpy(), df["label"].to_numpy(), df["score"].to_numpy())
    raise KitError(f"{path}: expected a prediction .npz or a submission .csv")


def align(preds: list[Predictions]) -> list[Predictions]:
    """Reindex every input to the union of ids (first-seen order); missing ids become empty rows."""
    if not preds:
        raise KitError("ensemble: no inputs")
    import pandas as pd

    ids = pd.unique(np.concatenate([p.ids.astype(object) for p in preds]))  # first-seen order, hashed in C
    return [p.reindex(ids) for p in preds]


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


def _result(ids, labels, scores) -> Predictions:
    labels = np.asarray(labels, np.int64)
    return Predictions(ids, labels, np.where(labels >= 0, scores, 0.0))


def ens_max(preds: list[Predictions]) -> Predictions:
    """Per id, the (label, score) with the highest score among the models that predicted it."""
    preds = align(preds)
    labels, scores = _top1(preds)
    masked = np.where(labels >= 0, scores, -np.inf)
    best = np.argmax(masked, axis=0)  # first model wins ties
    col = np.arange(labels.shape[1])
    return _result(preds[0].ids, labels[best, col], scores[best, col])


def ens_correct(preds: list[Predictions]) -> Predictions:
    """preds[0] = top-18k base, preds[1] = top-2k model: where both agree on the top-1 label the score
    becomes preds[1]'s; elsewhere the base is kept (ids the base lacks take preds[1]'s prediction)."""
    if len(preds) != 2:
        raise KitError(f"ensemble correct: needs exactly 2 inputs (top-18k base, top-2k model), got {len(preds)}")
    preds = align(preds)
    labels, scores = _top1(preds)
    base = _base(labels, [0, 1])
    col = np.arange(labels.shape[1])
    label, score = labels[base, col], scores[base, col]
    agree = (labels[0] == labels[1]) & (labels[0] >= 0)
    return _result(preds[0].ids, label, np.where(agree, scores[1], score))


def ens_boost(preds: list[Predictions], alpha: float = 0.5) -> Predictions:
    """Base preds[0]; score = s0 + alpha * (sum of the other models' scores for the same label)."""
    preds = align(preds)
    labels, scores = _top1(preds)
    base = _base(labels, list(range(len(preds))))
    col = np.arange(labels.shape[1])
    label, score = labels[base, col], scores[base, col]
    same = (labels == label) & (label >= 0) & (np.arange(len(preds))[:, None] != base)
    return _result(preds[0].ids, label, score + alpha * (scores * same).sum(axis=0))


def ens_weighted(preds: list[Predictions], weights=None) -> Predictions:
    """Base = the highest-weight model that predicted the id; score = sum of w_j * s_j over the models
    agreeing with the base label, divided by the sum of all weights (report 001's weighted confidence)."""
    preds = align(preds)
    w = _weights(weights, len(preds))
    labels, scores = _top1(preds)
    order = sorted(range(len(preds)), key=lambda j: -w[j])  # stable: earlier file wins ties
    base = _base(labels, order)
    col = np.arange(labels.shape[1])
    label = labels[base, col]
    agree = (labels == label) & (label >= 0)
    return _result(preds[0].ids, label, (w[:, None] * scores * agree).sum(axis=0) / w.sum())


def _group_rows(labels: np.ndarray):
    """Group the present (row, label) pairs of labels [N, K]: (flat positions kept, group of each kept
    entry, row and label of each group). Groups are ordered by (row, label); within a group the kept
    entries stay in column order, so a bincount over groups sums them in the order a per-row loop would."""
    n, k = labels.shape
    flat = labels.ravel()
    keep = np.flatnonzero(flat >= 0)
    rows, lab = keep // k, flat[keep]
    order = np.lexsort((lab, rows))  # stable: equal (row, label) keep column order
    keep, rows, lab = keep[order], rows[order], lab[order]
    new = np.ones(len(keep), bool)
    new[1:] = (rows[1:] != rows[:-1]) | (lab[1:] != lab[:-1])
    group = np.cumsum(new) - 1
    return keep, group, rows[new], lab[new]


class SoftPlan:
    """`soft_average` prepared for many weight vectors on the same aligned inputs (weight fitting):
    the (row, label) grouping is computed once, each call is a bincount and a sort."""

    def __init__(self, preds: list[Predictions]):
        self.preds = align(preds)
        self.labels = np.concatenate([p.labels for p in self.preds], axis=1)  # [N, sum k]
        self.keep, self.group, self.g_rows, self.g_labels = _group_rows(self.labels)
        self.rows, self.starts = np.unique(self.g_rows, return_index=True)  # rows with >= 1 label

    def totals(self, weights=None) -> np.ndarray:
        """Weighted average score of every (row, label) group."""
        w = _weights(weights, len(self.preds))
        contrib = np.concatenate([wj * np.where(p.labels >= 0, p.scores, 0.0) for wj, p in zip(w, self.preds)],
                                 axis=1)
        return np.bincount(self.group, weights=contrib.ravel()[self.keep], minlength=len(self.g_rows)) / w.sum()

    def __call__(self, weights=None, topk: int | None = None) -> Predictions:
        topk = topk or max(p.labels.shape[1] for p in self.preds)
        totals = self.totals(weights)
        if topk == 1:
            out_l, out_s = self._top1(totals)
        else:
            out_l, out_s = top_per_row(totals, self.g_rows, self.g_labels, len(self.labels), topk)
        return Predictions(self.preds[0].ids, out_l, out_s)

    def _top1(self, totals: np.ndarray):
        """The rank-0 slot of `top_per_row` without a sort: per row the first group (smallest label)
        holding the row's highest total (NaN ranks last, as in the sort)."""
        out_l = np.full((len(self.labels), 1), -1, np.int64)
        out_s = np.zeros((len(self.labels), 1), np.float32)
        if len(totals) == 0:
            return out_l, out_s
        best = np.fmax.reduceat(totals, self.starts)  # NaN-ignoring max per row
        at = np.arange(len(totals))
        is_best = totals == np.repeat(best, np.diff(np.append(self.starts, len(totals))))
        first = np.minimum.reduceat(np.where(is_best, at, len(totals)), self.starts)
        first = np.where(first == len(totals), self.starts, first)  # all NaN: the first group, like the sort
        out_l[self.rows, 0], out_s[self.rows, 0] = self.g_labels[first], totals[first]
        return out_l, out_s


def soft_average(preds: list[Predictions], weights=None, topk: int | None = None) -> Predictions:
    """Weighted average of the top-k scores over the union of labels (a label absent from a model's
    top-k counts 0 for it); returns the top-k labels of the average (ties: smaller label first).
    Vectorised over rows (one lexsort + bincount), equal to the per-row loop it replaced (tests)."""
    return SoftPlan(preds)(weights, topk)


def ens_soft(preds: list[Predictions], weights=None, topk: int | None = None, fit_on=None, solution=None,
             step: float = 0.1) -> Predictions:
    """`soft_average` with given weights, or weights fitted on OOF predictions `fit_on` (same models,
    same order) against `solution` to maximise GAP (`fit_soft_weights`); equal weights otherwise."""
    if weights is None and fit_on is not None and solution is not None:
        weights = fit_soft_weights(fit_on, solution, step=step)
    return soft_average(preds, weights, topk)


ENSEMBLES = {
    "max": ens_max,
    "correct": ens_correct,
    "boost": ens_boost,
    "weighted": ens_weighted,
    "soft": ens_soft,
}


def fit_soft_weights(preds: list[Predictions], solution, step: float = 0.1) -> np.ndarray:
    """Simplex weights (sum 1, grid `step`) maximising GAP of `soft_average` on OOF predictions.

    Exhaustive over the grid while it has <= 2000 points, else coordinate search over the same grid
    from equal weights; deterministic (first best wins)."""
    m = len(preds)
    if m == 1:
        return np.ones(1)
    n = int(round(1 / step))
    from kit.metrics import Matcher

    plan = SoftPlan(preds)  # align + grouping once for every grid point
    matcher = Matcher(truth_for(plan.preds[0], solution), plan.preds[0].ids.astype(object))

    def score(w):  # = score_gap(soft_average(preds, w), solution), the string work done once
        top = plan(w, topk=1)
        label = top.labels[:, 0]
        return float(matcher.gap(label, np.where(label >= 0, top.scores[:, 0], 0.0).astype(np.float32)))

    if _n_compositions(n, m) <= 2000:
        grid = [np.array(c, float) / n for c in _compositions(n, m)]
        gaps = [score(w) for w in grid]
        return grid[int(np.argmax(gaps))]
    w = np.full(m, 1.0 / m)
    best = score(w)
    for _ in range(3):
        improved = False
        for j, t in itertools.product(range(m), np.arange(n + 1) / n):
            cand = w.copy()
            rest = cand.sum() - cand[j]
            cand = cand * ((1 - t) / rest if rest > 0 else 0.0)
            cand[j] = t
            if cand.sum() > 0 and (g := score(cand)) > best:
                w, best, improved = cand, g, True
        if not improved:
            break
    return w


def _compositions(n: int, m: int):
    """All m-tuples of non-negative ints summing to n (stars and bars), in lexicographic bar order."""
    for bars in itertools.combinations(range(n + m - 1), m - 1):
        edges = (-1, *bars, n + m - 1)
        yield tuple(edges[i + 1] - edges[i] - 1 for i in range(m))


def _n_compositions(n: int, m: int) -> int:
    from math import comb

    return comb(n + m - 1, m - 1)


def _weights(weights, m: int) -> np.ndarray:
    w = np.ones(m) if weights is None else np.asarray(weights, float).ravel()
    if len(w) != m:
        raise KitError(f"ensemble: {len(w)} weights for {m} inputs")
    if (w < 0).any() or w.sum() <= 0:
        raise KitError(f"ensemble: weights must be >= 0 with a positive sum (got {w.tolist()})")
    return w


# --- running an ensemble over files (what `kit ensemble` calls) -----------------------------------

def latest_test_files(predictions_dir: str | Path = "predictions") -> list[Path]:
    """The newest `test_*.npz` (by modification time) of every experiment directory, sorted by name."""
    root = Path(predictions_dir)
    if not root.is_dir():
        raise KitError(f"{root}: no submissions directory (run `kit predict --split test` first)")
    found = []
    for exp in sorted(p for p in root.iterdir() if p.is_dir()):
        tests = sorted(exp.glob("test_*.npz"), key=lambda p: (p.stat().st_mtime, p.name))
        if tests:
            found.append(tests[-1])
    if not found:
        raise KitError(f"{root}: no experiment has a test_*.npz prediction file")
    return found


def validation_gap(exp_dir: str | Path, truth=None, runs_dir: str | Path = "runs") -> float | None:
    """Mean GAP over folds of an experiment's `val_fold<N>.npz` (else `oof_fold<N>.npz`) files, against
    `truth` if given, else the folds CSV named in `runs/<exp>/fold<N>/config.yaml`. None if no file."""
    import re

    from kit.config import read_yaml_mapping

    exp_dir = Path(exp_dir)
    files = sorted(exp_dir.glob("val_fold*.npz")) or sorted(exp_dir.glob("oof_fold*.npz"))
    gaps = []
    for f in files:
        fold_truth = truth
        if fold_truth is None:
            fold = re.search(r"fold(\d+)", f.name).group(1)
            cfg_path = Path(runs_dir) / exp_dir.name / f"fold{fold}" / "config.yaml"
            if not cfg_path.is_file():
                raise KitError(f"{f}: no --solution given and no {cfg_path} naming its folds CSV")
            data = read_yaml_mapping(cfg_path).get("data")
            folds_csv = data.get("folds_csv") if isinstance(data, dict) else None
            if not folds_csv:
                raise KitError(f"{cfg_path}: no data.folds_csv")
            fold_truth = load_truth(folds_csv)
        gaps.append(score_gap(load_predictions(f), fold_truth))
    return float(np.mean(gaps)) if gaps else None


def run_ensemble(method: str, files=(), out: str | Path = "submission.csv", weights=None, alpha: float = 0.5,
                 solution=None, fit_on=(), topk: int | None = None, step: float = 0.1,
                 ensembles_dir: str | Path = "ensembles", predictions_dir: str | Path = "predictions",
                 runs_dir: str | Path = "runs", log=print) -> dict:
    """Load FILES (or the latest test file of every experiment), pick weights, print GAPs where a
    solution covers the scored files, write `ensembles/<method>.npz` and the submission CSV `out`.

    Weights: `weights` if given; else for `weighted`, each model's GAP (on `fit_on` files, else on
    FILES) against `solution`, or, when FILES were discovered, each experiment's validation GAP
    (`validation_gap`); for `soft`, simplex weights fitted on `fit_on` (else FILES) against `solution`.
    """
    if method not in ENSEMBLES:
        raise KitError(f"unknown ensemble '{method}' (valid: {', '.join(ENSEMBLES)})")
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
        if discovered and truth is None and method == "weighted":
            weights = [validation_gap(f.parent, None, runs_dir) for f in files]
            missing = [str(f.parent) for f, w in zip(files, weights) if w is None]
            if missing:
                raise KitError(f"{missing[0]}: no val_fold*.npz or oof_fold*.npz to weight its test predictions")
        elif truth is not None and method == "weighted":
            weights = [score_gap(p, truth) for p in scored]
        elif truth is not None:
            weights = fit_soft_weights(scored, truth, step=step)
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
    from kit.predictions import save_predictions
    from kit.submission import write_submission

    npz = save_predictions(result, Path(ensembles_dir) / f"{method}.npz")
    csv = write_submission(result, out)
    log(f"wrote {npz} and {csv} ({len(result)} ids, {int((result.labels[:, 0] >= 0).sum())} predicted)")
    return {"predictions": result, "npz": npz, "csv": csv, "weights": weights, "gaps": gaps, "files": files}

