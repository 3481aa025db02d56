"""README.md is a user's guide whose walkthrough cannot rot.

Every ```bash block preceded by `<!-- runnable -->` runs, in order, in one bash script (`set -euo pipefail`)
in a fresh folder, on a tiny synthetic GLDv2-layout set, with the README's size variables (DATA, TOP2K,
TOP18K, N_DISTRACTORS, SET, RUN_SET) set small. Kaggle's service is replaced: `kaggle` is a stand-in
script that checks the folder it is given, and `kit` is kit's CLI with the Kaggle API faked the way
tests/test_kaggle.py fakes it. The test fails when a command fails or when a file the tutorial names
(in a block or in backquotes in its prose) is missing afterwards."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"<!-- runnable -->\s*\n```bash\n(.*?)\n```", re.S)
OUTPUT_ROOTS = ("folds", "predictions", "ensembles", "submissions", "runs", "work", "kaggle_out", "$DATA", "$P")
PATH_TOKEN = re.compile(r"(?<![\w/.-])((?:%s)/[\w./-]*[\w/])" % "|".join(re.escape(r) for r in OUTPUT_ROOTS))

# the README's variables, tiny: 6 classes, 5 kept (one left for distractors), 2 training steps, 64 px
TRAIN = "data.image_size=64 data.batch_size=8 data.num_workers=0 optim.epochs=1 optim.max_steps_per_epoch=2"
RECIPE = " ".join(["workers=1", "top2k.top=3", "top18k.top=5", "filter.image_size=64"] + [
    f"{m}.set.{kv}" for m in ("model18k", "model2k") for kv in TRAIN.split()] + [
    f"{p}.set.data.image_size=64" for p in ("predict18k", "predict2k")])
ENV = {"TOP2K": "3", "TOP18K": "5", "N_DISTRACTORS": "10", "SET": TRAIN, "RUN_SET": RECIPE,
       "KAGGLE_USERNAME": "alice", "OMP_NUM_THREADS": "1"}

FAKE_KIT = '''#!{python}
"""kit's CLI with Kaggle's API replaced (no network, no account): submissions are accepted and scored."""
import sys

import kit.kaggle.submit as ksub


class Scored:
    status, public_score = "COMPLETE", "0.1234"


class FakeApi:
    def competition_submit(self, file_name, message, competition, quiet=False):
        return type("R", (), {{"message": "Successfully submitted", "ref": 1}})()

    def competition_submit_code(self, file_name, message, competition, kernel, version, quiet=False):
        return type("R", (), {{"message": "Successfully submitted code", "ref": 2}})()

    def get_submission(self, ref):
        return Scored()


ksub._kaggle_api = FakeApi
from kit.cli import main  # noqa: E402

sys.exit(main())
'''

FAKE_KAGGLE = '''#!/bin/bash
# stand-in for the kaggle client: `kaggle datasets create|version -p DIR` and `kaggle kernels push -p DIR`
echo "kaggle $*" >> "$KAGGLE_CALLS"
while [ $# -gt 0 ]; do [ "$1" = -p ] && dir=$2; shift; done
[ -n "$dir" ] && [ -d "$dir" ] || { echo "kaggle: no folder '$dir'" >&2; exit 1; }
ls "$dir"/*-metadata.json > /dev/null || { echo "kaggle: $dir has no metadata json" >&2; exit 1; }
'''


def runnable_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def tutorial_section(text: str) -> str:
    start = text.index("## Tutorial")
    return text[start:text.index("\n## ", start + 1)]


def named_paths(text: str) -> set[str]:
    """Output paths the tutorial names: in its blocks and in backquotes in its prose (no placeholders)."""
    found = set()
    for block in runnable_blocks(text):
        found |= set(PATH_TOKEN.findall(block))
    for quoted in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        if " " not in quoted and "<" not in quoted:
            found |= set(PATH_TOKEN.findall(quoted))
    return found


def test_readme_is_a_short_users_guide():
    text = README.read_text()
    assert len(text.splitlines()) < 300
    for word in ("session", "issue ", "this machine", "main's venv", "../shared", "work period"):
        assert word not in text.lower(), word
    assert len(runnable_blocks(tutorial_section(text))) >= 8
    assert (ROOT / "LICENSE").is_file()


def test_every_named_path_pattern_is_found():
    """The path finder sees what the tutorial writes (guards the check below against a silent regex)."""
    paths = named_paths(tutorial_section(README.read_text()))
    for p in ("folds/top2k.csv", "submissions/filtered.csv", "$P/test_filtered.npz", "kaggle_out/kit-wheels",
              "$DATA/distractors.csv", "ensembles/soft.npz", "work/classifier"):
        assert p in paths, p


@pytest.mark.slow
def test_tutorial_blocks_run_in_order(tmp_path):
    from kit.synth import generate

    text = tutorial_section(README.read_text())
    blocks = runnable_blocks(text)
    data = tmp_path / "data"       # the library call, not `kit synth`: independent of the CLI's flag names
    generate(data, classes=6, images=90, test_images=20, distractors=4, size=64, workers=1)
    work = tmp_path / "w"
    fake = tmp_path / "bin"
    work.mkdir()
    fake.mkdir()
    (fake / "kit").write_text(FAKE_KIT.format(python=sys.executable))
    (fake / "kaggle").write_text(FAKE_KAGGLE)
    for f in fake.iterdir():
        f.chmod(0o755)
    script = ["set -euo pipefail"]
    for i, block in enumerate(blocks, 1):
        script += [f"echo '### README block {i}' >&2", block]
    env = dict(os.environ, **ENV, DATA=str(data), KAGGLE_CALLS=str(tmp_path / "kaggle_calls.txt"),
               PATH=os.pathsep.join([str(fake), str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True,
                       timeout=900)
    markers = [line for line in r.stderr.splitlines() if line.startswith("### README block")]
    assert r.returncode == 0, f"{markers[-1:]} failed (exit {r.returncode}):\n{r.stderr[-3000:]}"
    assert len(markers) == len(blocks)
    stale = [line for line in r.stderr.splitlines() if line.startswith("kit") and "deprecat" in line.lower()]
    assert not stale, f"the README uses old names: {stale}"           # old flag names warn for one release
    out = r.stdout.splitlines()
    assert any(line.startswith("GAP ") for line in out)                       # kit score / kit run
    assert "submission 2: complete, public score 0.1234" in out             # kit submit --kernel --wait
    calls = (tmp_path / "kaggle_calls.txt").read_text().splitlines()
    assert calls == ["kaggle datasets create -p kaggle_out/kit-wheels --dir-mode zip",
                     "kaggle datasets create -p kaggle_out/kit-models --dir-mode zip",
                     "kaggle kernels push -p kaggle_out/kernel"]
    missing = [p for p in sorted(named_paths(text))
               if not (work / p.replace("$DATA", str(data)).replace("$P", "predictions/top18k")).exists()]
    assert not missing, f"the README names files the commands did not write: {missing}"
