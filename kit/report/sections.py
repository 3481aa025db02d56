"""The report's sections: each reads `Inputs` and returns an HTML fragment (a note when its inputs are absent)."""
from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Iterator

import pandas as pd

from kit.csvfiles import read_csv
from kit.errors import KitError
from kit.predictions import Predictions, load_predictions
from kit.report.collect import (Inputs, experiments, filtered_file, fold_files, gallery_picks, gallery_rows,
                                gallery_source, rare_threshold, score_by_bucket, verdict)
from kit.report.html import note, png_tag, render, table, thumbnail
from kit.train.log import curves_figure


def _with_truth(inp: Inputs, files: list[tuple[str, Path]]) -> Iterator[tuple[str, Predictions]]:
    """(name, predictions) of each prediction file that holds ids with known truth, loaded one at a time."""
    for name, path in files:
        pred = load_predictions(path)
        if any(i in inp.truth for i in pred.ids):
            yield name, pred


def section_curves(inp: Inputs) -> str:
    files = [f for e in experiments(inp) for f in sorted((inp.runs_dir / e).glob("fold*/metrics.csv"))]
    if not files:
        return note(f"No learning curves: no {inp.runs_dir}/{inp.exp or '<exp>'}/fold<N>/metrics.csv found.")
    parts, summary = [], []
    for f in files:
        run = f"{f.parent.parent.name}/{f.parent.name}"
        try:
            df = pd.read_csv(f)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
            parts.append(note(f"{run}: metrics.csv is unreadable ({type(e).__name__})."))
            continue
        if df.empty:
            parts.append(note(f"{run}: metrics.csv is empty."))
            continue
        png = io.BytesIO()
        curves_figure(df, run).savefig(png, format="png", dpi=90, bbox_inches="tight")
        parts.append(png_tag(png.getvalue(), alt=f"learning curves {run}", cls="plot"))
        losses = [c for c in df.columns if c.endswith("loss")]
        row = {"run": run, "epochs": len(df), **{f"last {c}": float(df[c].iloc[-1]) for c in losses}}
        if "val_gap" in df and df["val_gap"].notna().any():
            best = int(df["val_gap"].idxmax())
            epoch = df["epoch"][best] if "epoch" in df else best
            row["best val_gap"], row["at epoch"] = float(df["val_gap"][best]), str(epoch)
        summary.append(row)
    return table(pd.DataFrame(summary)) + "".join(parts)


def section_buckets(inp: Inputs, rare_below: int) -> str:
    if inp.train_counts is None:
        return note("No GAP by class frequency: pass --labels FOLDS.csv (training counts per landmark).")
    threshold, why = rare_threshold(inp.train_counts, rare_below)
    n_rare = int((inp.train_counts < threshold).sum())
    counts = inp.train_counts.to_dict()
    head = note(f"{why}: {len(counts) - n_rare} frequent and {n_rare} rare classes in the folds CSV. "
                "The frequent / rare rows score only the landmark images of those classes.")
    files = [(f"{e}/{p.name}", p) for e in experiments(inp) for p in fold_files(inp, e).values()
             if not p.name.startswith("train_")]
    files += [(f"{inp.ensembles_dir.name}/{p.name}", p) for p in sorted(inp.ensembles_dir.glob("*.npz"))]
    scored = [(name, score_by_bucket(pred, inp.truth, counts, threshold)) for name, pred in _with_truth(inp, files)]
    if not scored:
        return head + note("No prediction file has ids with known truth (oof/val ids need --folds, test ids "
                           "need --solution).")
    names, frames = zip(*scored)
    return head + table(pd.concat(frames, keys=names, names=["predictions"]).reset_index(0))


def section_gallery(inp: Inputs, n: int) -> str:
    src = gallery_source(inp)
    if src is None:
        return note("No gallery: needs predictions/<exp>/test_fold<N>.npz and train_fold<N>.npz with "
                    "embeddings (kit predict --split test / --split train).")
    exp, fold, test, train = src
    train_landmarks = {i: t[0] for i, t in inp.truth.items() if len(t) == 1}
    if inp.data_dir is not None and (inp.data_dir / "train.csv").is_file():
        tr = read_csv(inp.data_dir / "train.csv", required=("id", "landmark_id"), dtype={"id": str})
        train_landmarks.update(zip(tr["id"], tr["landmark_id"].astype(int)))
    rows = gallery_rows(test, train, train_landmarks, gallery_picks(test, inp.truth, n))
    fpath = filtered_file(inp, exp)
    filtered = load_predictions(fpath) if fpath is not None else None
    info = (f"Experiment {exp}, fold {fold}: {len(rows)} of {len(test)} test images (landmark and non-landmark "
            f"images when the truth is known), spread from the most to the least confident; neighbours from "
            f"{len(train)} training embeddings (cosine). Filter: {fpath.name if fpath else 'none found'}."
            + ("" if inp.data_dir else " No --data-dir: thumbnails not shown."))
    return note(info) + render("gallery.html.j2", rows=rows, truth=inp.truth,
                               thumb=functools.partial(thumbnail, inp.data_dir),
                               verdict=lambda r: verdict(filtered, r.id, r.label, r.score))


def section_ensembles(inp: Inputs) -> str:
    if inp.comparison is not None and inp.comparison.is_file():
        try:
            data = json.loads(inp.comparison.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise KitError(f"{inp.comparison}: not JSON ({e.msg}, line {e.lineno})") from None
        except UnicodeDecodeError as e:
            raise KitError(f"{inp.comparison}: not UTF-8 text (byte {e.start})") from None
        if isinstance(data, dict) and isinstance(data.get("table"), dict):  # kit demo's comparison.json
            data = data["table"]
        if not isinstance(data, dict):
            raise KitError(f"{inp.comparison}: expected an object {{method: {{gap: ...}}}}")
        rows = [{"method": k, **(v if isinstance(v, dict) else {"gap": v})} for k, v in data.items()]
        return note(f"From {inp.comparison.name}.") + table(pd.DataFrame(rows))
    files = sorted(inp.ensembles_dir.glob("*.npz"))
    if not files:
        return note("No ensemble comparison: pass --comparison JSON or have ensembles/*.npz.")
    if not inp.truth:
        return note(f"{len(files)} ensemble file(s) found but no truth to score them: pass --solution / --folds.")
    rows = [{"method": name, **score_by_bucket(pred, inp.truth, {}, 1).iloc[0].drop(["bucket", "classes"]).to_dict()}
            for name, pred in _with_truth(inp, [(p.stem, p) for p in files])]
    if not rows:
        return note(f"{len(files)} ensemble file(s) found but none of their ids has known truth.")
    return (note(f"{inp.ensembles_dir.name}/*.npz scored on their ids with known truth (--solution, --folds).")
            + table(pd.DataFrame(rows)))

