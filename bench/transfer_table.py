"""The transfer table of bench/README.md from the real-photo results (bench/results/real*.json);
`python bench/tables.py` writes it with the other tables.

One line per set and run (full, quick): the zero-training kNN row, the recipe kNN row, the row picked on
validation, the pick's lead over both, sensitivity at specificity 0.98 and whether validation's pick
agrees with test (within one paired standard error of the best candidate on test). A result file that
is absent is listed as not measured; one from an older bench (no pick agreement) says so.
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- transfer table: begin -->", "<!-- transfer table: end -->"
SETS = (("Oxford/Paris", "real"), ("Oxford only", "real.oxford"), ("Paris only", "real.paris"),
        ("Porto", "real.porto"), ("Nigeria", "real.nigeria"))
ZERO, RECIPE = "zero-training kNN", "recipe kNN"
CPU = "an AMD EPYC, 2 cores shared with other jobs"   # where bench/results/real*.json were measured
CURRENT = "recipe kNN +spatial re-rank, evidence fusion"   # a row only the calibrated-fusion bench has
OLDER = " (older code)"   # marks a run measured before it


def _pair(row: dict | None) -> str:
    t = (row or {}).get("test", {})
    return f"{t['gap']:.3f} / {t['accuracy']:.3f}" if "gap" in t else "-"


def _sens(row: dict | None) -> str:
    v = (row or {}).get("test", {}).get("sens_at_spec98")
    return "-" if v is None else f"{v:.3f}"


def line(name: str, run: str, result: dict | None) -> str:
    if result is None:
        return f"| {name} | {run} | not measured | | | | | | |"
    table, picked = result["table"], result["best_on_validation"]
    zero, recipe, pick = table.get(ZERO), table.get(RECIPE), table.get(picked)
    gap = lambda r: (r or {}).get("test", {}).get("gap")   # noqa: E731
    top1 = lambda r: (r or {}).get("test", {}).get("accuracy")   # noqa: E731
    lead = "-"
    if None not in (gap(pick), gap(zero), gap(recipe)):
        lead = (f"{gap(pick) - gap(zero):+.3f} / {gap(pick) - gap(recipe):+.3f} GAP, "
                f"{top1(pick) - top1(recipe):+.3f} top-1")
    a = result.get("pick", {}).get("agreement")
    if not a:
        agree = "not recorded (older bench)"
    elif a["best_on_test"] == picked:
        agree = f"yes: best on test (Spearman {a['spearman_val_test']:.2f})"
    else:
        agree = (f"{'yes' if a['picked_within_se'] else 'no'}: best on test {a['best_on_test']} by "
                 f"{a['test_lead_over_picked']:.3f}, SE {a['test_paired_se']:.3f} (Spearman "
                 f"{a['spearman_val_test']:.2f})")
    if CURRENT not in table:
        run += OLDER
    return (f"| {name} | {run} | {_pair(zero)} | {_pair(recipe)} | {picked} | {_pair(pick)} | {lead} | "
            f"{_sens(recipe)} -> {_sens(pick)} | {agree} |")


def provenance(path: Path, result: dict) -> str:
    """One line: the file, its command, its time and load, and whether `kit run` of the pick reproduced it."""
    load = result.get("load_average")
    repro = result.get("recipe") or {}
    same = {True: "same test GAP", False: "a different test GAP"}.get(repro.get("equal"), "not re-run")
    if not load:
        return f"- `{path.name}`: `{result.get('command', '?')}`."
    return (f"- `{path.name}`: `{result.get('command', '?')}`; {result.get('seconds', 0):.0f} s on {CPU} "
            f"(load average {load[0]:.1f} at the end); `kit run` of the picked recipe: {same}.")


def markdown(results: Path = RESULTS) -> str:
    out = ["| set | run | zero-training kNN (GAP / top-1) | recipe kNN | picked on validation | picked | "
           "lead vs zero-training / vs recipe kNN | sens@spec0.98 (recipe kNN -> picked) | validation pick agrees |",
           "|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for name, stem in SETS:
        for run, suffix in (("full", ""), ("quick", ".quick")):
            path = results / f"{stem}{suffix}.json"
            result = json.loads(path.read_text()) if path.is_file() else None
            out.append(line(name, run, result))
            if result is not None:
                notes.append(provenance(path, result))
    older = "; \"older code\": measured before the calibrated fusion, not re-run" \
        if any(OLDER in row for row in out) else ""
    return "\n".join(out + ["", f"Runs (each row above is one run{older}):"] + notes)
