"""The result tables of bench/README.md, made from bench/results/*.json.

    python bench/tables.py           # rewrite every table between its markers in bench/README.md and README.md
    python bench/tables.py --check   # exit 1 when a table differs from its JSON (tests/test_bench_tables.py)

Each table sits between `<!-- NAME table: begin -->` and `<!-- NAME table: end -->`; the transfer table
(every real-photo set, full and quick) comes from transfer_table.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
TOP_README = HERE.parent / "README.md"
SETS = {"real.json": "Oxford/Paris: 407 train images, 21 landmarks; 1127 test images, 140 landmark",
        "real.porto.json": "Porto: 150 train images, 5 landmarks; 327 test images, 75 landmark",
        "real.nigeria.json": "Nigeria (not shipped): 294 train images, 11 landmarks; 317 test images, 157 landmark"}


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def rows(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def real_table() -> str:
    """bench/real.py's own table of real.json (the Oxford/Paris full run)."""
    sys.path.insert(0, str(HERE))
    import real

    return real.table_markdown(load("real.json"))


def speed_table() -> str:
    g, k, t, f = load("gap_folds.json"), load("knn.json"), load("train_speed.json"), load("filter_speed.json")
    gap, folds = g["gap"]["float32_scores"], g["folds"]
    body = [
        ["GAP of 1,000,000 predictions (`kit.metrics.gap`)", f"{gap['gap_s']} s",
         f"plain Python loop {gap['reference_s']} s", f"{gap['speedup_gap_vs_reference']}x, equal to {gap['abs_diff_gap']:.0e}"],
        ["same, several landmarks per image (`gap_frames`, `kit score`)", f"{gap['gap_frames_s']} s",
         f"{gap['reference_s']} s", f"{gap['speedup_frames_vs_reference']}x"],
        [f"fold assignment, {folds['min_images50']['classes']:,} classes / {folds['min_images50']['images']:,} images "
         "(hand-written code of that date)", f"{folds['min_images50']['select_and_fold_s']} s",
         f"sklearn StratifiedKFold {folds['sklearn_stratifiedkfold_min_images50_s']} s", ""],
        [f"training step, {t['backbone']} {t['image_size']} px batch {t['batch']} (CPU s/step)",
         f"{t['cpu_seconds_per_step']['kit']} s", f"bare timm loop {t['cpu_seconds_per_step']['bare']} s",
         f"{t['overhead_ratio_kit_vs_bare']}x the time"],
        [f"exact kNN {k['n']:,} x {k['dim']}, {k['queries']} queries, k={k['k']}: faiss `IndexFlatIP` / torch",
         f"{k['faiss_flat']['search_s']} s / {k['torch_exact']['search_s']} s",
         f"sklearn brute force {k['sklearn_brute_cosine']['search_s']} s",
         f"{k['speedup_flat_vs_sklearn']}x / {k['speedup_torch_vs_sklearn']}x"],
        [f"approximate kNN, faiss {k['faiss_ivf']['kind']} nprobe {k['faiss_ivf']['nprobe']} "
         f"(recall@{k['k']} {k['faiss_ivf']['recall_at_k']})", f"{k['faiss_ivf']['search_s']} s",
         f"sklearn brute force {k['sklearn_brute_cosine']['search_s']} s", f"{k['faiss_ivf']['speedup_vs_sklearn']}x"],
    ]
    for name, r in f["results"].items():
        body.append([f"filter `{name}`, s per test image: cold / cached features", f"{r['query_s_per_image']:.4g} / "
                     f"{r['warm_s_per_image']:.4g}", "", f"test GAP {r['test_gap_before']:.3f} -> {r['test_gap_after']:.3f}"])
    return rows(["what", "kit", "reference", "ratio"], body)


def scale_table() -> str:
    s = load("scale.json")
    sizes = list(s["results"])
    steps = [st for st in s["results"][sizes[-1]]]

    def cell(r: dict | None) -> str:
        if not r or r.get("status") != "ok":
            return (r or {}).get("status", "")
        return f"{r['seconds']:.3g} s / {r['rss_peak_mb'] / 1024:.2f} GB"

    body = [[f"`{st}`"] + [cell(s["results"][z].get(st)) for z in sizes] for st in steps]
    return rows(["step (time / peak RSS)"] + [f"{float(z):.0%} of GLDv2" for z in sizes], body)


def decode_table() -> str:
    d = load("decode.json")
    body = [[r["what"], f"{r['s_per_image_full']}", f"{r['s_per_image_reduced']}", f"{r['speedup']}x"] for r in d["rows"]]
    return rows(["reader", "full decode, s/image", "reduced decode, s/image", "speed-up"], body)


def writes_table() -> str:
    c, r = load("cache_writes.json"), load("runner.json")
    body = [
        [f"cache write into a folder of {c['files_in_folder_at_end']:,} files, first / last {c['window']}",
         f"{c['cache_write_ms_first']} / {c['cache_write_ms_last']} ms", f"{c['cache_last_over_first']}x"],
        ["durable (fsynced) write, empty / full folder", f"{c['durable_write_ms_empty_folder']} / "
         f"{c['durable_write_ms_full_folder']} ms", f"{c['durable_full_over_empty']}x"],
        [f"runner overhead per stage ({r['stages']} stages, direct vs `run_recipe`)",
         f"{r['overhead_per_stage_seconds']} s", ""],
        ["`kit run` of a finished work folder (every stage skipped), best of 3",
         f"{min(r['cached_kit_run_seconds'])} s", ""],
    ]
    return rows(["what", "measured", "ratio"], body)


def results_table() -> str:
    """README.md's real-photo table: zero-training kNN, recipe kNN and the row picked on validation, per set."""
    def cell(row: dict) -> str:
        return f"{row['test']['gap']:.3f} / {row['test']['accuracy']:.3f}"

    body = []
    for name, what in SETS.items():
        r = load(name)
        picked = r["best_on_validation"]
        body.append([what, cell(r["table"]["zero-training kNN"]), cell(r["table"]["recipe kNN"]),
                     f"{picked}: {cell(r['table'][picked])}"])
    return rows(["set", "zero-training kNN (Lite0, 224 px)", "recipe kNN (Lite1, 384 px)", "picked on validation"], body)


def transfer_table() -> str:
    sys.path.insert(0, str(HERE))
    import transfer_table as tt

    return tt.markdown()


TABLES = {"real.json": real_table, "transfer": transfer_table, "speed": speed_table, "scale": scale_table,
          "decode": decode_table, "writes": writes_table}


def render(text: str, tables: dict = TABLES) -> str:
    for name, make in tables.items():
        begin, end = f"<!-- {name} table: begin -->", f"<!-- {name} table: end -->"
        if begin not in text or end not in text:
            raise SystemExit(f"no markers for the {name} table")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{make()}\n{end}{tail}"
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only check that the tables match the JSONs")
    args = p.parse_args(argv)
    status = 0
    for path, tables in ((README, TABLES), (TOP_README, {"results": results_table})):
        text = path.read_text()
        new = render(text, tables)
        if args.check:
            if new != text:
                print(f"{path}: tables differ from bench/results/*.json; run python bench/tables.py")
                status = 1
        elif new != text:
            path.write_text(new)
            print(f"wrote the tables of {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
