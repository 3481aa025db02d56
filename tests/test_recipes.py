"""Recipes and the one runner: validation before any stage runs, caching, resume, one run per work folder."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kit.cli import main
from kit.errors import KitError
from kit.pipeline import stages  # noqa: F401
from kit.pipeline.recipe import RECIPE_DIR, load_recipe
from kit.pipeline.runner import run_recipe

ROOT = Path(__file__).resolve().parents[1]

TINY = {"name": "tiny", "workers": 0, "stages": [
    {"folds": {"min_images": 1, "n_folds": 2}},
    {"predict": {"checkpoint": "pretrained", "set": {"data.image_size": 64, "data.batch_size": 16}}},
    {"retrieve": {"embeddings": "predict", "k": 5}},
    {"submission": {"input": "retrieve", "folds": "folds"}}]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipes") / "data"
    assert main(["synth", "--out-dir", str(out), "--classes", "4", "--images", "48", "--test-images", "12", "--size",
                 "64", "--distractor-images", "4", "--workers", "1"]) == 0
    return out


def _write(tmp_path, recipe) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(recipe if isinstance(recipe, str) else yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_shipped_recipes_are_valid_and_linked_at_the_top_level():
    names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    assert {"retrieval", "classifier", "demo"} <= set(names)
    for name in names:
        r = load_recipe(name)
        assert r.stages[-1].stage.name == "submission"
        assert (ROOT / "recipes" / f"{name}.yaml").read_text() == (RECIPE_DIR / f"{name}.yaml").read_text()


BAD = [
    ("stages:\n  - fold: {}\n", "stages[0]: unknown stage 'fold' (valid: "),
    ("stages:\n  - folds: {}\n  - retrieve: {top_m: 3}\n", "stage 'retrieve' (retrieve): unknown key 'top_m' (valid: id, "),
    ("stages:\n  - folds: {n_folds: many}\n", "stage 'folds' (folds): n_folds: 'many' is not a valid int"),
    ("stages:\n  - folds: {}\n  - predict: {}\n  - retrieve: {method: knnn}\n",
     "(retrieve): method 'knnn' is unknown (valid: knn, centroids)"),
    ("stages:\n  - folds: {}\n  - predict: {model: late}\n  - train: {id: late}\n",
     "model 'late' is not an earlier stage (earlier: folds; stages run in the order listed)"),
    ("stages:\n  - folds: {}\n  - ensemble: {id: e, inputs: [e, folds]}\n", "inputs 'e' is not an earlier stage"),
    ("stages:\n  - folds: {}\n  - predict: {folds: folds}\n  - retrieve: {embeddings: folds}\n",
     "embeddings 'folds' is a folds stage; it must be one of: predict, ensemble"),
    ("stages:\n  - folds: {id: ../../etc}\n", "id must be letters, digits"),
    ("stages:\n  - folds: {}\n  - folds: {}\n", "a second stage with id 'folds'"),
    ("stages:\n  - folds: {}\n  - train: {config: top2k, set: {optim.lr: fast}}\n", "optim.lr='fast' is not a valid float"),
    ("stages:\n  - folds: {}\n  - train: {config: nosuch}\n", "config 'nosuch': no such file or shipped config (shipped: "),
    ("stages:\n  - folds: [1, 2]\n", "settings must be a mapping, not a list"),
    ("seed: 0\nstagez: []\n", "unknown key 'stagez' (valid: "),
    ("- folds: {}\n", "top level must be a mapping of recipe keys with 'stages', not a list"),
    ("stages: []\n", "'stages' must be a non-empty list"),
    ("stages:\n  - folds: {\n", "invalid YAML"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_a_bad_recipe_is_one_line_naming_file_stage_and_key(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    assert main(["run", str(path), "--work-dir", str(tmp_path / "w"), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"kit: error: {path}") and message in err, err
    assert not (tmp_path / "w").exists()


def test_huge_recipe_file_is_refused_before_reading(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:   # a sparse 1 GB file: refused from its size, never read
        f.truncate(1 << 30)
    assert main(["run", str(path), "--check"]) == 2
    assert "a small YAML file is expected" in capsys.readouterr().err


def test_overrides_reach_stages_and_bad_ones_name_the_stage(tmp_path):
    r = load_recipe("retrieval", ["seed=3", "rerank.candidates=4", "predict.set.data.image_size=256"])
    assert r.run.seed == 3 and r.spec("rerank").settings.candidates == 4
    assert r.spec("predict").settings.set["data.image_size"] == "256"
    with pytest.raises(KitError, match="no stage 'rerankk'"):
        load_recipe("retrieval", ["rerankk.top_n=4"])
    with pytest.raises(KitError, match="candidates: 'x' is not a valid int"):
        load_recipe("retrieval", ["rerank.candidates=x"])


def test_run_caches_resumes_and_reruns_only_what_changed(data, tmp_path, capsys):
    work = tmp_path / "w"
    first = run_recipe(TINY, data, work)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"GAP {first['gap']:.6f}" and out[-2] == f"validation GAP {first['val_gap']:.6f}"
    sub = (work / "submission.csv").read_text()
    assert len(sub.splitlines()) == 13
    again = run_recipe(TINY, data, work)
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 4 and again["gap"] == first["gap"]
    # a changed setting re-runs its stage and what reads it, nothing before it
    run_recipe(TINY, data, work, overrides=["retrieve.k=3"])
    out = capsys.readouterr().out
    assert "[2/4] predict: done before" in out and "[3/4] retrieve ..." in out and "[4/4] submission ..." in out
    # a stage killed before it finished (no stage.json) runs again; the result is the same
    run_recipe(TINY, data, work)
    (work / "retrieve" / "stage.json").unlink()
    run_recipe(TINY, data, work)
    out = capsys.readouterr().out
    assert "[3/4] retrieve ..." in out and (work / "submission.csv").read_text() == sub


def test_second_run_on_the_same_work_folder_refuses(data, tmp_path):
    import fcntl

    work = tmp_path / "w"
    work.mkdir()
    with open(work / ".kit-run.lock", "a+") as f:
        f.write("pid 12345")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(KitError, match="another kit run is using this work folder"):
            run_recipe(TINY, data, work)
    assert not (work / "folds").exists()


@pytest.mark.parametrize("boundary", ["folds", "predict", "retrieve"])
def test_kill_9_at_a_stage_boundary_then_rerun_gives_the_same_submission(data, tmp_path, boundary):
    path = _write(tmp_path, TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}   # one thread count for every run: same float sums

    def kit_run(work):
        return subprocess.Popen([sys.executable, "-m", "kit", "run", str(path), "--data-dir", str(data), "--work-dir",
                                 str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    ref, work = tmp_path / "ref", tmp_path / "w"
    assert kit_run(ref).wait() == 0
    proc = kit_run(work)
    deadline = time.time() + 120
    while not (work / boundary / "stage.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert kit_run(work).wait() == 0
    assert (work / "submission.csv").read_text() == (ref / "submission.csv").read_text()


def test_shipped_retrieval_recipe_runs_on_a_plain_gldv2_folder(data, tmp_path, capsys):
    """Nothing prepared: train.csv, train/, test/, sample_submission.csv (+ a solution to score)."""
    work = tmp_path / "w"
    assert main(["run", "retrieval", "--data-dir", str(data), "--work-dir", str(work), "predict.set.data.image_size=64",
                 "rerank.image_size=64", "rerank.candidates=3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("GAP ") and (work / "submission.csv").is_file()
    assert [line.split(":")[0] for line in lines if line.startswith("[") and line.endswith(" s")] == \
        ["[1/4] folds", "[2/4] predict", "[3/4] rerank", "[4/4] submission"]
