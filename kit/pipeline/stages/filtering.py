"""The non-landmark filter stage (`kit filter`): rescore predictions so non-landmark photos rank last,
its parameters fitted on the validation set (validation fold + distractors) unless packaged. The validation
set itself is rescored cross-fitted (each half by the parameters fitted on the other half), so its GAP does
not credit the filter with its own fit."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kit.ensemble.rules import load_any
from kit.errors import KitError
from kit.filters.base import MODES
from kit.filters.chain import Chain, build_filter, filter_names, load_filter, save_filter
from kit.inference.calibration import halves
from kit.pipeline.stage import choice, ref, stage
from kit.pipeline.stages.combine import PREDICTIONS
from kit.predictions import Predictions, concat, save_predictions
from kit.truth import load_truth, true_top1


@dataclass
class FilterSettings:
    input: str = ref("", stages=PREDICTIONS)
    name: str = "sift+distractor"     # registry names joined by + (kit.filters.FILTERS)
    embeddings: str = ref("", stages=("predict",))   # its train / distractors embeddings feed the filters
    fit: bool = True                  # fit the parameters on the validation set (else the filters' defaults)
    mode: str = choice("demote", lambda: MODES)   # demote failing rows below every passing row, or drop (empty) them
    params: dict[str, str] = field(default_factory=dict)   # parameters set by hand, e.g. {threshold: 12}
    candidates: int = 0               # local features: training images of the predicted class verified (0 = default)
    ratio: float = 0.0                # Lowe's ratio (0 = the filter's default)
    transform: str = ""               # RANSAC model ("" = default)
    image_size: int = 0               # extractor working size (0 = default)
    max_keypoints: int = 0
    k: int = 0                        # distractor: neighbours averaged (0 = default)
    folds: str = ref("folds", stages=("folds",))


def check_filter(s: FilterSettings) -> None:
    filter_names(s.name)
    if not s.input:
        raise KitError("input: name the stage whose predictions are filtered")


def filter_options(s: FilterSettings, ctx) -> dict:
    """The chain's settings: the run's images and cache, the embeddings stage's files, given options."""
    opts = {"data_dir": str(ctx.data), "cache_dir": str(ctx.cache_dir), "n_jobs": ctx.run.threads,
            "train_labels": str(ctx.of(s.folds)["folds"])}
    if s.embeddings:
        emb = ctx.split_files(s.embeddings)
        opts.update({k: str(emb[split]) for k, split in (("train_pred", "train"), ("distractors", "distractors"))
                     if split in emb})
    given = {"neighbours": s.candidates, "ratio": s.ratio, "transform": s.transform, "k": s.k}
    extractor = {"image_size": s.image_size, "max_keypoints": s.max_keypoints}
    return opts | {k: v for k, v in given.items() if v} | {"extractor_kw": {k: v for k, v in extractor.items() if v}}


@stage("filter", FilterSettings, check=check_filter)
def filter_stage(s: FilterSettings, ctx) -> dict:
    """Non-landmark filter chain fitted on validation (or packaged), every split rescored -> SPLIT.npz."""
    files = ctx.split_files(s.input)
    emb = ctx.split_files(s.embeddings) if s.embeddings else {}

    def with_embeddings(split):
        p = load_any(files[split])
        if p.embeddings is None and split in emb:
            p = Predictions(p.ids, p.labels, p.scores, load_any(emb[split]).reindex(p.ids).embeddings)
        return p

    opts = filter_options(s, ctx)
    shipped = ctx.shipped_file("filter.json")
    chain = load_filter(shipped, opts) if shipped is not None else build_filter(s.name, s.mode, opts)
    crossed = None
    if shipped is None and s.fit and "val" in files:
        fit = concat([with_embeddings(x) for x in ("val", "distractors") if x in files], k=1)
        true = true_top1(fit, load_truth(ctx.of(s.folds)["val_solution"]))
        chain.fit(fit, true)
        for f in chain.filters:
            ctx.log(f"  fit {f.name}: GAP {f.fit_report['gap_before']:.4f} -> {f.fit_report['gap_after']:.4f} "
                    f"with {f.fit_report['params']}")
        crossed = [by_hand(fitted(build_filter(s.name, s.mode, opts), fit, true, halves(fit.ids) != h), s.params)
                   for h in (0, 1)]
        ctx.log("  validation rescored cross-fitted (each half by the parameters fitted on the other half)")
    by_hand(chain, s.params)
    out = {}
    for split in ctx.query_splits(files):
        pred = with_embeddings(split)
        rescored = (cross_applied(crossed, pred) if crossed and split in ("val", "distractors")
                    else chain.apply(pred).predictions)
        out[split] = save_predictions(rescored, ctx.dir / f"{split}.npz")
    save_filter(chain, ctx.dir / "filter.json")
    return {"splits": out, "filter": ctx.dir / "filter.json"}


def fitted(chain: Chain, fit: Predictions, true, rows) -> Chain:
    """The chain fitted on the `rows` (a mask) of the fit set (fit, true)."""
    rows = np.flatnonzero(rows)
    chain.fit(fit.subset(rows), np.asarray(true)[rows])
    return chain


def by_hand(chain: Chain, params: dict) -> Chain:
    """The chain with the parameters set by hand (`params`) over the fitted ones."""
    for f in chain.filters:
        f.params.update({k: float(v) for k, v in params.items() if k in f.params})
    return chain


def cross_applied(chains: list[Chain], pred: Predictions) -> Predictions:
    """Validation rows rescored cross-fitted: a row in half h (a checksum of its id) by `chains[h]`, fitted on
    the other half, so validation scores the filter as it scores new photos. Both chains rescore the whole
    split (inlier counts are cached), so a demoted row stays below every passing row."""
    a, b = (c.apply(pred).predictions for c in chains)
    first = (halves(pred.ids) == 0)[:, None]
    return Predictions(pred.ids, np.where(first, a.labels, b.labels), np.where(first, a.scores, b.scores),
                       a.embeddings)
