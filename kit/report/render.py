"""`kit report`: one self-contained HTML page (page.html.j2) of a run's sections; absent inputs make a note."""
from __future__ import annotations

import datetime
from pathlib import Path

from kit.atomic import write_text
from kit.errors import KitError
from kit.report.collect import MAILRU_RARE_BELOW, Inputs, truth_and_counts
from kit.report.html import note, render
from kit.report.sections import section_buckets, section_curves, section_ensembles, section_gallery

_SECTION_ERRORS = (KitError, OSError, ValueError, KeyError, IndexError, ImportError, RuntimeError)

SECTIONS = [("curves", "Learning curves"), ("buckets", "GAP by class frequency (frequent vs rare)"),
            ("gallery", "Test images and their nearest training images"), ("ensembles", "Ensemble comparison")]


def _guard(fn, *args) -> str:
    """Run one section; an unexpected input problem becomes a note, not a crashed report."""
    try:
        return fn(*args)
    except _SECTION_ERRORS as e:
        return note(f"Section not rendered: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")


def build_report(out: str | Path = "report/index.html", runs_dir: str | Path = "runs",
                 predictions_dir: str | Path = "predictions", exp: str | None = None,
                 data_dir: str | Path | None = None, solution: str | Path | None = None,
                 folds: str | Path | None = None, comparison: str | Path | None = None,
                 ensembles_dir: str | Path | None = None, filtered: str | Path | None = None,
                 gallery: int = 8, rare_below: int = MAILRU_RARE_BELOW) -> Path:
    """Render the report page to `out` (atomically) and return its path."""
    opt = lambda p: None if p is None else Path(p)  # noqa: E731
    predictions_dir = Path(predictions_dir)
    inp = Inputs(Path(runs_dir), predictions_dir, opt(ensembles_dir) or predictions_dir.parent / "ensembles",
                 exp, opt(data_dir), opt(solution), opt(folds), opt(comparison), opt(filtered))
    for name in ("solution", "folds", "comparison", "filtered"):
        p = getattr(inp, name)
        if p is not None and not p.is_file():
            raise KitError(f"{p}: file not found (--{name})")
    if not any(d.is_dir() and any(d.iterdir()) for d in (inp.runs_dir, inp.predictions_dir, inp.ensembles_dir)) \
            and inp.comparison is None:
        raise KitError(f"report: nothing to report: {inp.runs_dir}, {inp.predictions_dir} and {inp.ensembles_dir} "
                       "are empty or absent (run `kit train` / `kit predict` first, or point --runs-dir and "
                       "--predictions-dir at them)")
    inp.truth, inp.train_counts = truth_and_counts(inp.folds, inp.solution)
    body = {"curves": _guard(section_curves, inp), "buckets": _guard(section_buckets, inp, rare_below),
            "gallery": _guard(section_gallery, inp, gallery), "ensembles": _guard(section_ensembles, inp)}
    page = render(
        "page.html.j2", title=f"kit report: {exp}" if exp else "kit report",
        now=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), runs_dir=str(inp.runs_dir),
        predictions_dir=str(inp.predictions_dir), sections=[(k, t, body[k]) for k, t in SECTIONS])
    return write_text(page, out)
