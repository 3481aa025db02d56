"""kit/cli.py and kit/commands/: every command and flag documented, one name per idea, the examples in the
help texts valid, and the old names of renamed flags, recipe keys and registry entries still working."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from kit.cli import HelpFormatter, build_parser, main

# old names of renamed ideas: none may be a visible flag of any command (command: flags; "*" = every command)
BANNED = {"*": {"--train-csv", "--train-labels", "--folds-csv", "--train-pred", "--neighbours", "--top-n",
                "--jobs", "--data", "--work"},
          "synth": {"--distractors", "--out"}, "demo": {"--out"}, "kaggle package": {"--out"}}
# the one flag name of an idea, found by a phrase of its help
IDEAS = {r"\bid,landmark_id\b(?!,)": "--labels", r"\bthreads\b": "--threads", r"\bprocesses\b": "--workers",
         r"embeddings of labelled images": "--index", r"\b(folder|directory)\b": "-dir"}
NOT_THE_IDEA = {"--solution", "--config", "--data-dir", "--cache-dir", "--checkpoint", "--notebook", "--find-links",
                "--runs-dir", "--predictions-dir", "--ensembles-dir", "--reuse"}   # mention the phrase, are not it
PLACEHOLDERS = {"METHOD": "soft", "NAME": "sift", "N": "1", "C": "landmark-recognition-2021"}


def commands(parser=None, path=()):
    """(command path, parser) of `kit` and of every sub-command, nested ones included."""
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, path + (name,))


def visible(parser):
    return [a for a in parser._actions if a.help is not argparse.SUPPRESS
            and not isinstance(a, argparse._SubParsersAction)]


ALL = list(commands())
COMMANDS = [(" ".join(path) or "kit", p) for path, p in ALL]


def help_of(action) -> str:
    return HelpFormatter("kit")._get_help_string(action)


@pytest.mark.parametrize("name,parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_and_flag_has_help_that_states_its_default(name, parser):
    assert (parser.description or "").strip(), f"kit {name}: no description"
    for a in visible(parser):
        assert (a.help or "").strip(), f"kit {name} {a.option_strings or a.dest}: no help"
        if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
            text = help_of(a)
            assert "default" in text or "required" in text, f"kit {name} {a.option_strings}: help states no default"


@pytest.mark.parametrize("name,parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_one_name_per_idea(name, parser):
    flags = {s for a in visible(parser) for s in a.option_strings}
    assert not flags & (BANNED["*"] | BANNED.get(name, set())), f"kit {name}: an old name is visible"
    for a in visible(parser):
        flag = a.option_strings[0] if a.option_strings else None
        for phrase, want in IDEAS.items():
            if flag and flag not in NOT_THE_IDEA and re.search(phrase, a.help):
                assert flag.endswith(want) if want.startswith("-d") else flag == want, \
                    f"kit {name} {flag}: help says {phrase!r}, the flag of that idea is {want}"


def filled(parser, skip=None) -> list[str]:
    """argv with a value for every required argument of `parser` (except `skip`), so it parses."""
    argv = []
    required = [a for a in parser._actions if a.required and a is not skip]
    required += [g._group_actions[0] for g in parser._mutually_exclusive_groups
                 if g.required and skip not in g._group_actions]
    for a in required:
        value = (list(a.choices)[0] if a.choices and a.dest != "name" else "sift" if a.dest == "name"
                 else "1" if a.type in (int, float) else "x.npz")
        argv += ([a.option_strings[0]] if a.option_strings else []) + [value]
    return argv


def examples():
    """(command path, example) for each backquoted kit command line or flag in a description or help text."""
    for path, parser in ALL:
        texts = [parser.description or ""] + [a.help or "" for a in visible(parser)]
        for text in texts:
            for ex in re.findall(r"`([^`]+)`", text):
                ex = " ".join(ex.split())
                if ex.startswith("kit ") and re.search(r" --|=", ex) or ex.startswith("--") or \
                        re.fullmatch(r"[a-z_.]+=\S+", ex):
                    yield path, ex


EXAMPLES = sorted(set(examples()))


@pytest.mark.parametrize("path,example", EXAMPLES, ids=[e for _, e in EXAMPLES])
def test_help_examples_are_valid(path, example, capsys):
    """A kit command line parses with the new names only; `--flag value` examples parse as flags of their
    command; `key=value` examples are valid config (train, predict) or recipe (run) overrides."""
    text = re.sub(r"\[[^]]*\]", "", example.replace("...", ""))
    text = re.sub(r"\{([^,}]+)[^}]*\}", r"\1", text)
    words = [PLACEHOLDERS.get(w, w) for w in text.split()]
    parser = build_parser()
    if re.fullmatch(r"[a-z_.]+=\S+", example):
        if path == ("run",):
            from kit.pipeline import stages  # noqa: F401  (registers the stages)
            from kit.pipeline.recipe import load_recipe

            load_recipe("retrieval", [example], deep=False)
        else:
            from kit.config import load_config

            load_config("top2k", [example])
        return
    if words[0] == "kit":
        argv = words[1:]
    else:
        sub = dict(ALL)[path]
        argv = list(path) + filled(sub) + words
    args, extra = parser.parse_known_args(argv)
    assert all("=" in e for e in extra), f"{example}: unrecognized {extra}"
    assert "deprecated" not in capsys.readouterr().err, f"{example}: uses an old name"


def test_ensemble_weights_example_is_accepted():
    args = build_parser().parse_args(["ensemble", "soft", "a.npz", "b.npz", "--weights", "0.6", "0.4"])
    assert args.weights == [0.6, 0.4]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ensemble", "soft", "a.npz", "b.npz", "--weights", "0.6,0.4"])


def aliases():
    """(command path, old flag, new flag, action) of every hidden old name."""
    for path, parser in ALL:
        for a in parser._actions:
            for old, new in getattr(a, "renamed", {}).items():
                yield path, old, new, a


ALIASES = sorted(aliases(), key=lambda t: (t[0], t[1]))


def test_the_renames_are_all_there():
    got = {(" ".join(p), o, n) for p, o, n, _ in ALIASES}
    assert {("folds", "--train-csv", "--labels"), ("report", "--folds-csv", "--labels"),
            ("filter", "--train-labels", "--labels"), ("filter", "--train-pred", "--index"),
            ("filter", "--neighbours", "--candidates"), ("filter", "--jobs", "--threads"),
            ("rerank", "--top-n", "--candidates"),
            ("rerank", "--jobs", "--threads"), ("retrieve", "--jobs", "--workers"), ("synth", "--jobs", "--workers"),
            ("synth", "--out", "--out-dir"), ("synth", "--distractors", "--distractor-images"),
            ("demo", "--out", "--out-dir"), ("run", "--data", "--data-dir"), ("run", "--work", "--work-dir"),
            ("kaggle package", "--out", "--out-dir"), ("kaggle package", "--work", "--work-dir")} <= got


@pytest.mark.parametrize("path,old,new,action", ALIASES, ids=[f"{' '.join(p)} {o}" for p, o, _, _ in ALIASES])
def test_old_flag_works_with_one_deprecation_line(path, old, new, action, capsys):
    parser = dict(ALL)[path]
    value = [] if action.nargs == 0 else [list(action.choices)[0] if action.choices else
                                          "3" if action.type in (int, float) else "x.npz"]
    base = list(path) + filled(parser, skip=action)
    with_new = vars(build_parser().parse_args(base + [new] + value))
    assert capsys.readouterr().err == ""
    with_old = vars(build_parser().parse_args(base + [old] + value))
    assert capsys.readouterr().err == f"kit: {old} is deprecated, use {new}\n"
    assert with_old == with_new


def test_filter_positional_and_registry_name_are_kept(capsys):
    new = vars(build_parser().parse_args(["filter", "centroids", "--query", "p.npz", "--out", "o.npz"]))
    assert capsys.readouterr().err == ""
    old = vars(build_parser().parse_args(["filter", "centroid", "p.npz", "--out", "o.npz"]))
    assert capsys.readouterr().err.splitlines() == ["kit: filter 'centroid' is deprecated, use 'centroids'",
                                                    "kit: the positional PRED is deprecated, use --query PRED"]
    assert old == new
    assert main(["filter", "sift", "--out", "o.npz"]) == 2
    assert "give --query PRED" in capsys.readouterr().err
    from kit.filters import FILTERS

    assert FILTERS["centroid"] is FILTERS["centroids"] and "centroid" in FILTERS and "centroid" not in FILTERS.names()


def test_old_recipe_keys_work_with_one_deprecation_line(capsys):
    from kit.pipeline import stages  # noqa: F401  (registers the stages)
    from kit.pipeline.recipe import RENAMED_KEYS, check_deep, load_recipe

    new = load_recipe("demo", ["rerank.candidates=4", "rerank.threads=1",
                               "filter.candidates=2", "synth.distractor_images=7"], deep=False)
    assert capsys.readouterr().err == ""
    old = load_recipe("demo", ["rerank.top_n=4", "rerank.n_jobs=1", "filter.neighbours=2",
                               "synth.distractors=7"], deep=False)
    check_deep(old)   # validates again: still one line per key
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == sum(map(len, RENAMED_KEYS.values())) and all("is deprecated, use" in x for x in lines)
    assert "kit: rerank key 'top_n' is deprecated, use 'candidates'" in lines
    assert [s.settings for s in old.stages] == [s.settings for s in new.stages]


@pytest.mark.parametrize("command", ["train", "train-delf", "predict"])
def test_config_commands_list_the_registry_names(command, capsys):
    from kit.config import registries
    from kit.models.backbones import PACKAGED_WEIGHTS

    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    for key, names in {"model.backbone": PACKAGED_WEIGHTS, **registries()}.items():
        line = next(x for x in out.splitlines() if x.strip().startswith(key))
        assert all(n in line for n in names), line


def test_kit_help_imports_no_heavy_module():
    """`kit --help` builds every command's parser: none may import torch, cv2, pandas or faiss to do it."""
    code = ("import sys, io, contextlib, kit.cli\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: kit.cli.main(['--help'])\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'cv2', 'pandas', 'faiss', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
