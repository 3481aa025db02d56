"""The last stage: test predictions -> WORK/submission.csv in Kaggle's format, one row per sample id."""
from __future__ import annotations

from dataclasses import dataclass

from kit.ensemble.rules import load_any
from kit.errors import KitError
from kit.pipeline.stage import ref, stage
from kit.pipeline.stages.combine import PREDICTIONS, val_gap_of
from kit.submission import read_sample_ids, write_submission


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
