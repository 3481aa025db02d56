"""bench/README.md's result tables are the ones bench/tables.py makes from bench/results/*.json."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import tables  # noqa: E402


def test_bench_readme_tables_match_the_results():
    assert tables.main(["--check"]) == 0


def test_every_bench_script_is_described():
    text = (ROOT / "bench" / "README.md").read_text()
    for script in sorted((ROOT / "bench").glob("*.py")):
        if script.name not in ("tables.py", "real_data.py", "transfer_table.py"):
            assert f"`bench/{script.name}`" in text, script.name
    assert "<!-- transfer table: begin -->" in text and "<!-- transfer table: end -->" in text
