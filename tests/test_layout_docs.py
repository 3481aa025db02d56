"""The docs say where files really go: every default output path of the CLI and the configs is named in
docs/CONTRACTS.md ("Where files go") and in the README of the folder it lands in."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from kit.cli import build_parser
from kit.config import Config
from kit.inference.predict import prediction_path

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "docs" / "CONTRACTS.md"
OUTPUT_DESTS = {"out", "out_dir", "work", "work_dir", "runs_dir", "predictions_dir", "ensembles_dir", "file"}


def where_files_go() -> str:
    text = CONTRACTS.read_text()
    start = text.index("## Where files go")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def quoted(text: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", text))


def names(text: str, path: str) -> bool:
    """`path` (a file or folder) appears in backquotes, alone or as the start of a longer path."""
    path = path.rstrip("/")
    return any(q == path or q.startswith(path + "/") for q in quoted(text))


def cli_output_defaults() -> list[tuple[str, str, str]]:
    """(command, flag, default) of every option that names where a command writes (or reads its one file)."""
    found = []

    def walk(name, parser):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub, p in a.choices.items():
                    walk(f"{name} {sub}", p)
            elif a.option_strings and isinstance(a.default, str) and a.dest in OUTPUT_DESTS and a.default:
                found.append((name, a.option_strings[0], a.default))

    walk("kit", build_parser())
    return found


def config_paths() -> dict[str, str]:
    """The config's output patterns, made by the code that writes them."""
    cfg = Config()
    cfg.name = "<name>"
    pred = str(prediction_path(cfg, 0, "<split>")).replace("fold0", "fold<N>")
    return {"runs": str(cfg.run_dir(0)).replace("fold0", "fold<N>"), "predictions": pred,
            "oof": str(Path(cfg.predictions_dir) / cfg.name / "oof_fold<N>.npz")}


def test_every_cli_default_output_is_in_contracts():
    defaults = cli_output_defaults()
    assert len(defaults) >= 8, defaults            # the walk found the commands' output flags
    section = where_files_go()
    missing = [f"{c} {flag} {d}" for c, flag, d in defaults if not names(section, d)]
    assert not missing, f"docs/CONTRACTS.md 'Where files go' does not name: {missing}"


def test_config_output_patterns_are_documented():
    paths = config_paths()
    assert paths == {"runs": "runs/<name>/fold<N>", "predictions": "predictions/<name>/<split>_fold<N>.npz",
                     "oof": "predictions/<name>/oof_fold<N>.npz"}
    section = where_files_go()
    for p in paths.values():
        assert names(section, p), p
    predictions = (ROOT / "predictions" / "README.md").read_text()
    assert names(predictions, paths["predictions"]) and names(predictions, paths["oof"])
    assert names((ROOT / "runs" / "README.md").read_text(), paths["runs"])


def test_each_output_folder_has_a_readme_naming_its_writers():
    writers = {"folds": ["kit folds"], "predictions": ["kit train", "kit predict"], "ensembles": ["kit ensemble"],
               "submissions": ["kit submit"], "runs": ["kit train"], "work": ["kit run"]}
    for folder, commands in writers.items():
        text = (ROOT / folder / "README.md").read_text()
        for command in commands:
            assert f"`{command}" in text, (folder, command)
    defaults = {d for _, _, d in cli_output_defaults()}
    for folder in ("ensembles", "work"):               # folders a command writes by default
        assert folder in defaults, folder
        assert names((ROOT / folder / "README.md").read_text(), f"{folder}/")


def test_gitignore_keeps_the_folder_readmes():
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    for folder in ("folds", "predictions", "ensembles", "submissions", "runs", "work"):
        assert f"/{folder}/*" in ignore and f"!/{folder}/README.md" in ignore, folder
