"""`kit report`: one self-contained HTML page (PNG images inlined as base64) for a run.

Sections, each replaced by a note when its inputs are absent:
  1. learning curves from runs/<exp>/fold<N>/metrics.csv;
  2. GAP by class frequency: "frequent" vs "rare" landmarks by train count in the folds CSV (the Mail.ru
     report's split: rare = fewer than 100 training images), for every prediction file with known truth;
  3. a gallery of test images with their top-5 nearest training images by embedding (report 003's
     demo), predicted label, score, truth and the filter's verdict;
  4. saliency maps |d top-logit / d pixel| (report 001) from the experiment's best checkpoint;
  5. the ensemble comparison table (a JSON the demo writes, or ensembles/*.npz scored on the truth).
Truth comes from the folds CSV (train/OOF/val ids) and `--solution` (test ids).
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kit.errors import KitError
from kit.io import image_path, read_csv, write_text
from kit.predictions import Predictions, load_predictions

MAILRU_RARE_BELOW = 100          # Mail.ru report, section 4: fewer than 100 images = "rare"
_FOLD_FILE = re.compile(r"^(oof|val|test|train)_fold(\d+)\.npz$")
_SECTION_ERRORS = (KitError, OSError, ValueError, KeyError, IndexError, ImportError, RuntimeError)


@dataclass
class Inputs:
    """Everything the sections read; paths may be None or absent."""
    runs_dir: Path
    submissions_dir: Path
    ensembles_dir: Path
    exp: str | None = None
    data_dir: Path | None = None
    solution: Path | None = None
    folds: Path | None = None
    comparison: Path | None = None
    filtered: Path | None = None
    truth: dict[str, tuple[int, ...]] = field(default_factory=dict)   # id -> landmark ids (() = none)
    train_counts: pd.Series | None = None                              # landmark_id -> train images


# ----------------------------------------------------------------------------------------- helpers
def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def table(df: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    """A DataFrame as an HTML table, floats formatted, text escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for v in rec:
            if isinstance(v, (float, np.floating)):
                v = "" if np.isnan(v) else floatfmt.format(v)
            cells.append(f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def png_tag(png: bytes, alt: str = "", cls: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def rgb_png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode thumbnail")
    return buf.tobytes()


def thumbnail(data_dir: Path | None, split: str, image_id: str, size: int = 96) -> str:
    """An inlined thumbnail (longest side `size`) of a GLDv2 image, or a grey box if it is missing."""
    import cv2

    from kit.io import decode_image

    rgb = decode_image(image_path(data_dir, split, image_id)) if data_dir is not None else None
    if rgb is None:
        return f'<div class="missing" title="{html.escape(image_id)}">no image</div>'
    scale = size / max(rgb.shape[:2])
    rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                     interpolation=cv2.INTER_AREA)
    return png_tag(rgb_png(rgb), alt=image_id, cls="thumb")


def fmt_truth(landmarks: tuple[int, ...] | None) -> str:
    if landmarks is None:
        return "?"
    return " ".join(map(str, landmarks)) if landmarks else "non-landmark"


# ------------------------------------------------------------------------------------------- truth
def load_truth(folds: Path | None, solution: Path | None) -> tuple[dict[str, tuple[int, ...]], pd.Series | None]:
    """id -> true landmark ids, from the folds CSV (train ids) and the solution (test ids); and the
    number of training images per landmark_id (from the folds CSV)."""
    truth: dict[str, tuple[int, ...]] = {}
    counts = None
    if folds is not None and Path(folds).is_file():
        df = read_csv(folds, required=("id", "landmark_id"), dtype={"id": str})
        truth.update(zip(df["id"], ((int(v),) for v in df["landmark_id"])))
        counts = df["landmark_id"].astype(np.int64).value_counts()
    if solution is not None and Path(solution).is_file():
        from kit.submission import read_solution

        sol = read_solution(solution)
        truth.update(zip(sol["id"].astype(str), (tuple(int(v) for v in ls) for ls in sol["landmarks"])))
    return truth, counts


def rare_threshold(counts: pd.Series, rare_below: int = MAILRU_RARE_BELOW) -> tuple[int, str]:
    """Train-count threshold below which a landmark is "rare" (Mail.ru: fewer than 100 images), and why.

    When every class falls on one side of `rare_below` (small data sets), the median class count becomes
    the threshold so that both buckets are populated.
    """
    threshold, why = int(rare_below), f"Mail.ru split: rare = fewer than {rare_below} training images"
    if len(counts) and ((counts >= threshold).all() or (counts < threshold).all()):
        threshold = max(int(np.median(counts.to_numpy())), int(counts.min()) + 1)
        why = (f"every class is on one side of {rare_below} images here, so the median class count is the "
               f"threshold: rare = fewer than {threshold} training images")
    return threshold, why


def score_by_bucket(pred: Predictions, truth: dict, counts: dict, threshold: int) -> pd.DataFrame:
    """Scores of the ids with known truth: GAP over all of them (non-landmarks included), and GAP over the
    landmark images of frequent / rare classes (kit.metrics.gap_by_frequency; an image's class is its
    first true landmark, classes absent from `counts` are rare); top-1 accuracy on landmark images and
    the Mail.ru sensitivity / specificity (landmark kept / non-landmark rejected)."""
    from kit.metrics import accuracy, gap_by_frequency, gap_frames, sensitivity_specificity

    p = pred.subset(np.flatnonzero([i in truth for i in pred.ids]))
    label, score = p.top1
    true = [truth[i] for i in p.ids]
    first = np.array([t[0] if t else -1 for t in true], np.int64)
    is_lm = first >= 0
    sub = pd.DataFrame({"id": p.ids, "label": label, "score": score})
    sol = pd.DataFrame({"id": p.ids, "landmarks": [list(t) for t in true]})
    sens, spec = sensitivity_specificity(label >= 0, is_lm)
    rows = [{"bucket": "all", "classes": len(set(first[is_lm])), "images": len(p),
             "GAP": gap_frames(sub, sol) if is_lm.any() else np.nan,
             "top-1 acc": accuracy(label[is_lm], first[is_lm]) if is_lm.any() else np.nan,
             "sensitivity": sens, "specificity": spec}]
    by = gap_by_frequency(label, score, first, counts, threshold, ids=p.ids)
    n_train = pd.Series(first).map(counts).fillna(0).to_numpy()
    for name, m in (("frequent", is_lm & (n_train >= threshold)), ("rare", is_lm & (n_train < threshold))):
        rows.append({"bucket": name, "classes": len(set(first[m])), "images": int(by[f"n_{name}"]),
                     "GAP": by[name] if m.any() else np.nan,
                     "top-1 acc": accuracy(label[m], first[m]) if m.any() else np.nan,
                     "sensitivity": np.nan, "specificity": np.nan})
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------- file discovery
def experiments(inp: Inputs) -> list[str]:
    if inp.exp:
        return [inp.exp]
    names = {p.name for d in (inp.runs_dir, inp.submissions_dir) if d.is_dir() for p in d.iterdir() if p.is_dir()}
    return sorted(names)


def fold_files(inp: Inputs, exp: str) -> dict[tuple[str, int], Path]:
    """(kind, fold) -> submissions/<exp>/<kind>_fold<N>.npz."""
    d = inp.submissions_dir / exp
    out = {}
    for p in sorted(d.glob("*.npz")) if d.is_dir() else []:
        m = _FOLD_FILE.match(p.name)
        if m:
            out[(m.group(1), int(m.group(2)))] = p
    return out


def filtered_file(inp: Inputs, exp: str) -> Path | None:
    """--filtered, else the newest prediction file whose name says it was filtered."""
    if inp.filtered is not None:
        return inp.filtered if inp.filtered.is_file() else None
    cands = [p for d in (inp.submissions_dir / exp, inp.ensembles_dir) if d.is_dir()
             for p in d.glob("*.npz") if re.search(r"filter|delf|sift|distractor|centroid_thr", p.stem)]
    return max(cands, key=lambda p: p.stat().st_mtime) if cands else None


# -------------------------------------------------------------------------------------- sections
def section_curves(inp: Inputs) -> str:
    from matplotlib.figure import Figure

    files = [f for e in experiments(inp) for f in sorted((inp.runs_dir / e).glob("fold*/metrics.csv"))]
    if not files:
        return note(f"No learning curves: no {inp.runs_dir}/{inp.exp or '<exp>'}/fold<N>/metrics.csv found.")
    parts, summary = [], []
    for f in files:
        run = f"{f.parent.parent.name}/{f.parent.name}"
        df = pd.read_csv(f)
        if df.empty:
            parts.append(note(f"{run}: metrics.csv is empty."))
            continue
        x = df["epoch"] if "epoch" in df else pd.Series(range(len(df)))
        losses = [c for c in df.columns if c.endswith("loss")]
        scores = [c for c in df.columns if c.endswith(("acc", "gap")) and c != "epoch"]
        fig = Figure(figsize=(9, 3))
        for ax, cols, title in zip(fig.subplots(1, 2), (losses, scores), ("loss", "accuracy / GAP")):
            for c in cols:
                ax.plot(x, df[c], marker="o", ms=3, label=c)
            ax.set_title(f"{run}: {title}")
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            if cols:
                ax.legend(fontsize=8)
        parts.append(png_tag(figure_png(fig), alt=f"learning curves {run}", cls="plot"))
        row = {"run": run, "epochs": len(df)}
        for c in losses:
            row[f"last {c}"] = float(df[c].iloc[-1])
        if "val_gap" in df and df["val_gap"].notna().any():
            best = int(df["val_gap"].idxmax())
            row["best val_gap"], row["at epoch"] = float(df["val_gap"][best]), str(x[best])
        summary.append(row)
    return table(pd.DataFrame(summary)) + "".join(parts)


def section_buckets(inp: Inputs, rare_below: int) -> str:
    if inp.train_counts is None:
        return note("No GAP by class frequency: pass --folds FOLDS.csv (training counts per landmark).")
    threshold, why = rare_threshold(inp.train_counts, rare_below)
    n_rare = int((inp.train_counts < threshold).sum())
    counts = inp.train_counts.to_dict()
    parts = [note(f"{why}: {len(counts) - n_rare} frequent and {n_rare} rare classes in the folds CSV. "
                  "The frequent / rare rows score only the landmark images of those classes.")]
    files = [(f"{e}/{p.name}", p) for e in experiments(inp) for p in fold_files(inp, e).values()
             if not p.name.startswith("train_")]
    if inp.ensembles_dir.is_dir():
        files += [(f"{inp.ensembles_dir.name}/{p.name}", p) for p in sorted(inp.ensembles_dir.glob("*.npz"))]
    frames = []
    for name, path in files:
        pred = load_predictions(path)
        if not any(i in inp.truth for i in pred.ids):
            continue
        df = score_by_bucket(pred, inp.truth, counts, threshold)
        df.insert(0, "predictions", name)
        frames.append(df)
    if not frames:
        parts.append(note("No prediction file has ids with known truth (oof/val ids need --folds, test ids "
                          "need --solution)."))
        return "".join(parts)
    return "".join(parts) + table(pd.concat(frames, ignore_index=True))


@dataclass
class GalleryRow:
    id: str
    label: int
    score: float
    neighbours: list[tuple[str, int, float]]    # (train id, its landmark id, cosine similarity)


def spread_picks(scores: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """`n` of the `candidates` (row indices) spread evenly over their ranking by score, best first."""
    if n <= 0 or not len(candidates):
        return np.zeros(0, np.int64)
    ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
    return ranked[np.unique(np.linspace(0, len(ranked) - 1, min(n, len(ranked))).round().astype(int))]


def gallery_picks(test: Predictions, truth: dict, n: int) -> np.ndarray:
    """Test rows to show: with known truth, half landmark and half non-landmark images (the test set is
    mostly non-landmarks), each spread over the score ranking; without truth, spread over all rows."""
    scores = test.scores[:, 0]
    known = np.array([i in truth for i in test.ids], bool)
    if not known.any():
        return spread_picks(scores, np.arange(len(test)), n)
    landmark = np.flatnonzero(known & np.array([bool(truth.get(i)) for i in test.ids]))
    other = np.flatnonzero(known & ~np.isin(np.arange(len(test)), landmark))
    first = spread_picks(scores, landmark, max(n - min(len(other), n // 2), 0))
    picks = np.concatenate([first, spread_picks(scores, other, n - len(first))])
    return picks[np.argsort(-scores[picks], kind="stable")]


def gallery_rows(test: Predictions, train: Predictions, train_landmarks: dict, picks: np.ndarray,
                 k: int = 5) -> list[GalleryRow]:
    """Rows `picks` of the test predictions, each with its `k` nearest training images by cosine
    similarity of the embeddings (faiss, kit.retrieval)."""
    from kit.retrieval import SearchIndex

    sims, idx = SearchIndex(train.embeddings).search(test.embeddings[picks], k)
    rows = []
    for r, i in enumerate(picks):
        nb = [(train.ids[j], train_landmarks.get(train.ids[j], int(train.labels[j, 0])), float(s))
              for s, j in zip(sims[r], idx[r]) if j >= 0]
        rows.append(GalleryRow(test.ids[i], int(test.labels[i, 0]), float(test.scores[i, 0]), nb))
    return rows


def verdict(filtered: Predictions | None, image_id: str, label: int, score: float) -> str:
    """What the filter did to this id's top-1 prediction: kept, demoted, rejected (or no filter)."""
    if filtered is None:
        return "no filter file"
    if label < 0:
        return "no prediction"
    pos = np.flatnonzero(filtered.ids == image_id)
    if not len(pos):
        return "not filtered"
    flabel, fscore = int(filtered.labels[pos[0], 0]), float(filtered.scores[pos[0], 0])
    if flabel < 0:
        return "rejected (no landmark)"
    if flabel == label and fscore < score - 1e-6:
        return f"demoted to {fscore:.3f}"
    return f"kept ({flabel}, {fscore:.3f})"


def gallery_source(inp: Inputs) -> tuple[str, int, Predictions, Predictions] | None:
    """The first (exp, fold) with test and train prediction files that both hold embeddings."""
    for e in experiments(inp):
        files = fold_files(inp, e)
        for (kind, fold), path in files.items():
            if kind == "test" and ("train", fold) in files:
                test, train = load_predictions(path), load_predictions(files[("train", fold)])
                if test.embeddings is not None and train.embeddings is not None and len(test) and len(train):
                    return e, fold, test, train
    return None


def section_gallery(inp: Inputs, n: int) -> tuple[str, list[GalleryRow], str | None]:
    src = gallery_source(inp)
    if src is None:
        return note("No gallery: needs submissions/<exp>/test_fold<N>.npz and train_fold<N>.npz with "
                    "embeddings (kit predict --split test / --split train)."), [], None
    exp, fold, test, train = src
    train_landmarks = {i: t[0] for i, t in inp.truth.items() if len(t) == 1}
    if inp.data_dir is not None and (inp.data_dir / "train.csv").is_file():
        tr = read_csv(inp.data_dir / "train.csv", required=("id", "landmark_id"), dtype={"id": str})
        train_landmarks.update(zip(tr["id"], tr["landmark_id"].astype(int)))
    rows = gallery_rows(test, train, train_landmarks, gallery_picks(test, inp.truth, n))
    fpath = filtered_file(inp, exp)
    filtered = load_predictions(fpath) if fpath is not None else None
    head = ("<tr><th>test image</th><th>prediction</th><th>truth</th><th>filter</th>"
            + "".join(f"<th>neighbour {j + 1}</th>" for j in range(5)) + "</tr>")
    body = []
    for r in rows:
        true = inp.truth.get(r.id)
        ok = "" if true is None else (" ok" if r.label in true else (" bad" if r.label >= 0 or true else " ok"))
        pred = f"{r.label}<br>score {r.score:.3f}" if r.label >= 0 else "no prediction"
        cells = [f"<td>{thumbnail(inp.data_dir, 'test', r.id)}<div class='id'>{html.escape(r.id)}</div></td>",
                 f"<td class='pred{ok}'>{pred}</td>",
                 f"<td>{html.escape(fmt_truth(true))}</td>",
                 f"<td>{html.escape(verdict(filtered, r.id, r.label, r.score))}</td>"]
        for tid, lm, s in r.neighbours:
            same = " ok" if lm == r.label else ""
            cells.append(f"<td class='nb{same}'>{thumbnail(inp.data_dir, 'train', tid, 72)}"
                         f"<div>{lm}</div><div class='id'>cos {s:.3f}</div></td>")
        body.append("<tr class='gallery-row'>" + "".join(cells) + "</tr>")
    info = (f"Experiment {exp}, fold {fold}: {len(rows)} of {len(test)} test images (landmark and non-landmark "
            f"images when the truth is known), spread from the most to the least confident; neighbours from "
            f"{len(train)} training embeddings (cosine). Filter: {fpath.name if fpath else 'none found'}."
            + ("" if inp.data_dir else " No --data-dir: thumbnails not shown."))
    return note(info) + f'<table class="gallery">{head}{"".join(body)}</table>', rows, exp


def section_saliency(inp: Inputs, exp: str | None, ids: list[str], n: int, device: str) -> str:
    if n <= 0:
        return note("Saliency maps turned off (--saliency 0).")
    exps = [exp] if exp else experiments(inp)
    runs = [d for e in exps for d in sorted((inp.runs_dir / e).glob("fold*")) if (d / "best.pt").is_file()]
    if not runs:
        return note("No saliency maps: no runs/<exp>/fold<N>/best.pt checkpoint.")
    if inp.data_dir is None:
        return note("No saliency maps: pass --data-dir to read the test images.")
    ids = [i for i in ids if image_path(inp.data_dir, "test", i).is_file()]
    if not ids:
        ids = sorted(p.stem for p in (inp.data_dir / "test").glob("*/*/*/*.jpg"))
    if not ids:
        return note(f"No saliency maps: no test images under {inp.data_dir}/test.")
    import cv2

    from kit.augment import transforms_for
    from kit.checkpoint import load_model
    from kit.io import decode_image
    from kit.saliency import overlay, saliency_map

    model, cfg, label_map = load_model(runs[0], device=device)
    size = int(cfg.data.image_size)
    transform = transforms_for(cfg, train=False)
    cells = []
    for i in ids[:n]:
        rgb = decode_image(image_path(inp.data_dir, "test", i))
        if rgb is None:
            continue
        sal, top = saliency_map(model, transform(image=rgb)["image"])
        shown = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        cells.append(f"<figure>{png_tag(rgb_png(shown), i, 'sal')}{png_tag(rgb_png(overlay(shown, sal)), i, 'sal')}"
                     f"<figcaption>{i}: top class {label_map[top]}</figcaption></figure>")
    return (note(f"{runs[0].parent.name}/{runs[0].name}/best.pt: |d top logit / d pixel|, max over RGB "
                 f"(report 001), at {size} px.") + '<div class="sal-grid">' + "".join(cells) + "</div>")


def section_ensembles(inp: Inputs) -> str:
    if inp.comparison is not None and inp.comparison.is_file():
        try:
            data = json.loads(inp.comparison.read_text())
        except json.JSONDecodeError as e:
            raise KitError(f"{inp.comparison}: not JSON ({e.msg}, line {e.lineno})") from None
        if isinstance(data, dict) and isinstance(data.get("table"), dict):  # kit demo's comparison.json
            data = data["table"]
        if not isinstance(data, dict):
            raise KitError(f"{inp.comparison}: expected an object {{method: {{gap: ...}}}}")
        rows = [{"method": k, **(v if isinstance(v, dict) else {"gap": v})} for k, v in data.items()]
        return note(f"From {inp.comparison.name}.") + table(pd.DataFrame(rows))
    files = sorted(inp.ensembles_dir.glob("*.npz")) if inp.ensembles_dir.is_dir() else []
    if not files:
        return note("No ensemble comparison: pass --comparison JSON or have ensembles/*.npz.")
    if not inp.truth:
        return note(f"{len(files)} ensemble file(s) found but no truth to score them: pass --solution / --folds.")
    rows = []
    for p in files:
        pred = load_predictions(p)
        if not any(i in inp.truth for i in pred.ids):
            continue
        all_row = score_by_bucket(pred, inp.truth, {}, 1).iloc[0]
        rows.append({"method": p.stem, **all_row.drop(["bucket", "classes"]).to_dict()})
    if not rows:
        return note(f"{len(files)} ensemble file(s) found but none of their ids has known truth.")
    return (note(f"{inp.ensembles_dir.name}/*.npz scored on their ids with known truth (--solution, --folds).")
            + table(pd.DataFrame(rows)))


# ------------------------------------------------------------------------------------------ page
CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{margin-bottom:0} .meta{color:#666;margin-top:4px} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f4f4f4} .note{color:#555;font-style:italic} .plot{max-width:100%;display:block;margin:8px 0}
.thumb{display:block;border-radius:3px} .id{font-size:10px;color:#777;font-family:monospace}
.missing{width:72px;height:72px;background:#eee;color:#999;font-size:11px;
  display:flex;align-items:center;justify-content:center}
.ok{background:#e7f6e7} .bad{background:#fbe5e5} .pred{font-weight:600;white-space:nowrap}
.sal-grid{display:flex;flex-wrap:wrap;gap:16px} figure{margin:0} figcaption{font-size:12px;color:#555}
.sal{width:160px;height:160px;margin-right:4px;image-rendering:auto} nav a{margin-right:12px}
"""

SECTIONS = [("curves", "Learning curves"), ("buckets", "GAP by class frequency (frequent vs rare)"),
            ("gallery", "Test images and their nearest training images"), ("saliency", "Saliency maps"),
            ("ensembles", "Ensemble comparison")]


def _error_note(e: Exception) -> str:
    return note(f"Section not rendered: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def _guard(fn, *args):
    """Run one section; an unexpected input problem becomes a note, not a crashed report."""
    try:
        return fn(*args)
    except _SECTION_ERRORS as e:
        return _error_note(e)


def build_report(out: str | Path = "report/index.html", runs_dir: str | Path = "runs",
                 submissions_dir: str | Path = "submissions", exp: str | None = None,
                 data_dir: str | Path | None = None, solution: str | Path | None = None,
                 folds: str | Path | None = None, comparison: str | Path | None = None,
                 ensembles_dir: str | Path | None = None, filtered: str | Path | None = None,
                 gallery: int = 8, saliency: int = 3, rare_below: int = MAILRU_RARE_BELOW,
                 device: str = "cpu") -> Path:
    """Render the report page to `out` (atomically) and return its path."""
    opt = lambda p: None if p is None else Path(p)  # noqa: E731
    submissions_dir = Path(submissions_dir)
    inp = Inputs(Path(runs_dir), submissions_dir, opt(ensembles_dir) or submissions_dir.parent / "ensembles",
                 exp, opt(data_dir), opt(solution), opt(folds), opt(comparison), opt(filtered))
    for name in ("solution", "folds", "comparison", "filtered"):
        p = getattr(inp, name)
        if p is not None and not p.is_file():
            raise KitError(f"{p}: file not found (--{name})")
    inp.truth, inp.train_counts = load_truth(inp.folds, inp.solution)

    body = {"curves": _guard(section_curves, inp), "buckets": _guard(section_buckets, inp, rare_below)}
    try:
        body["gallery"], rows, gexp = section_gallery(inp, gallery)
    except _SECTION_ERRORS as e:
        body["gallery"], rows, gexp = _error_note(e), [], None
    body["saliency"] = _guard(section_saliency, inp, gexp, [r.id for r in rows], saliency, device)
    body["ensembles"] = _guard(section_ensembles, inp)

    title = f"kit report: {exp}" if exp else "kit report"
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    nav = "".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, t in SECTIONS)
    sections = "".join(f'<section id="{k}"><h2>{html.escape(t)}</h2>{body[k]}</section>' for k, t in SECTIONS)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='meta'>{now} · runs: {html.escape(str(inp.runs_dir))} · predictions: "
            f"{html.escape(str(inp.submissions_dir))}</p><nav>{nav}</nav>{sections}</body></html>\n")
    return write_text(page, out)
