"""The examples in `kit COMMAND --help` are real: every flag an example names exists on that command, and every
`key=value` override an example gives is accepted (config overrides by load_config, recipe overrides by the
recipe loader on the shipped recipes)."""
from __future__ import annotations

import argparse
import re

import pytest

from kit.cli import build_parser

EXAMPLE = re.compile(r"`(kit [^`]+)`")
OVERRIDE = re.compile(r"(?<![\w.])([a-z_0-9]+(?:\.[a-z_0-9]+)+=[^\s`,;)]+)")


def commands() -> dict[str, argparse.ArgumentParser]:
    found = {}

    def walk(name, parser):
        found[name] = parser
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub, p in a.choices.items():
                    walk(f"{name} {sub}", p)

    walk("kit", build_parser())
    return found


def help_texts() -> dict[str, str]:
    return {name: p.format_help() for name, p in commands().items()}


def test_help_examples_name_only_existing_flags():
    cmds = commands()
    checked = 0
    for where, text in help_texts().items():
        for example in EXAMPLE.findall(" ".join(text.split())):
            words = example.split()
            name = next(n for n in sorted(cmds, key=len, reverse=True) if " ".join(words).startswith(n))
            flags = {s for a in cmds[name]._actions for s in a.option_strings}
            for w in words[len(name.split()):]:
                if re.fullmatch(r"--[a-z][a-z0-9-]*", w):
                    assert w in flags, f"`{example}` in `{where} --help`: {name} has no {w}"
                    checked += 1
    assert checked >= 10


def overrides(text: str) -> set[str]:
    """key=value examples of a help text; placeholders (`predict.tta=NAME`) are not examples."""
    return {o for o in OVERRIDE.findall(" ".join(text.split())) if not re.fullmatch(r"[A-Z_]+", o.split("=", 1)[1])}


def config_overrides() -> list[str]:
    """key=value examples in the help of commands that take a config (train, predict, train-delf)."""
    texts = help_texts()
    return sorted(set().union(*(overrides(texts[c]) for c in ("kit train", "kit predict", "kit train-delf"))))


def recipe_overrides() -> list[str]:
    return sorted(overrides(help_texts()["kit run"]))


@pytest.mark.parametrize("override", config_overrides())
def test_config_override_examples_load(override):
    from kit.config import load_config

    load_config("top2k", [override])


@pytest.mark.parametrize("override", recipe_overrides())
def test_recipe_override_examples_apply_to_a_shipped_recipe(override):
    from kit.errors import KitError
    from kit.pipeline import stages  # noqa: F401  (registers the stages)
    from kit.pipeline.recipe import load_recipe

    errors = []
    for recipe in ("retrieval", "classifier", "demo"):
        try:
            load_recipe(recipe, [override], deep=False)
            return
        except KitError as e:
            errors.append(str(e))
    pytest.fail(f"`kit run --help` example {override} fits no shipped recipe: {errors}")


def test_the_examples_were_found():
    assert len(config_overrides()) >= 2 and len(recipe_overrides()) >= 2
