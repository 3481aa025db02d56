"""Code execution: a crafted .pt whose unpickling would run code is refused by EVERY loader
(checkpoint, --resume, model.weights=FILE, DELF file, report, the Kaggle notebook's predict steps) with
one line naming the file; the payload provably runs under plain pickle, so these tests can fail."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from kit.cli import main
from kit.config import config_to_dict, load_config
from kit.errors import KitError
from kit.models.checkpoint import load_checkpoint, save_checkpoint
from kit.models.safe_load import load_torch_file
from test_data import make_gldv2

torch.set_num_threads(1)
TINY = ["model.backbone=test_efficientnet_gn", "model.weights=none", "model.embedding_dim=0", "data.image_size=32",
        "data.batch_size=4", "data.num_workers=0", "data.augment=none", "device=cpu", "optim.epochs=1"]


class Payload:
    """Unpickling this writes `marker`: what an attacker's checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def evil_checkpoint(path, marker, **extra):
    """A file that looks like a kit checkpoint (all keys present) plus the payload."""
    state = {"model": {}, "config": {}, "label_map": [1, 2], "class_counts": [1, 1], "epoch": 0,
             "metrics": {}, "rng": Payload(marker), **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def one_line_error(capsys, argv) -> str:
    """Run `kit argv`: exit 2, no traceback, one 'kit: error: ...' line last (progress lines may precede)."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = [ln.strip() for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("kit: error: "), err
    assert sum(ln.startswith("kit: error") for ln in lines) == 1 and "Traceback" not in err, err
    return lines[-1]


def test_the_payload_really_runs_under_plain_pickle(tmp_path):
    """Control: without weights_only the file executes code (so the tests below prove something)."""
    marker = tmp_path / "pwned"
    evil_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.read_text() == "pwned"


def test_checkpoint_loader_refuses_and_names_the_file(tmp_path):
    marker = tmp_path / "pwned"
    path = evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(KitError, match=r"evil\.pt: refusing to load checkpoint: it holds (builtins\.)?exec,") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)
    with pytest.raises(KitError, match="refusing"):
        load_torch_file(path, "weights file")
    assert not marker.exists()


def test_predict_checkpoint_flag(tmp_path, capsys):
    marker = tmp_path / "pwned"
    make_gldv2(tmp_path)
    path = evil_checkpoint(tmp_path / "evil.pt", marker)
    err = one_line_error(capsys, ["predict", "--config", "top2k", "--split", "val", "--checkpoint", str(path),
                                  f"data.data_dir={tmp_path}", f"data.folds_csv={tmp_path / 'folds.csv'}", *TINY])
    assert "evil.pt: refusing to load checkpoint" in err
    assert not marker.exists()


def test_train_resume(tmp_path, capsys):
    marker = tmp_path / "pwned"
    make_gldv2(tmp_path)
    evil_checkpoint(tmp_path / "runs" / "r" / "fold0" / "last.pt", marker)
    err = one_line_error(capsys, ["train", "--config", "top2k", "--fold", "0", "--resume", "name=r",
                                  f"runs_dir={tmp_path / 'runs'}", f"predictions_dir={tmp_path / 'subs'}",
                                  f"data.data_dir={tmp_path}", f"data.folds_csv={tmp_path / 'folds.csv'}", *TINY])
    assert "last.pt: refusing to load checkpoint" in err
    assert not marker.exists()


def test_model_weights_file(tmp_path):
    from kit.models.backbones import create_backbone

    marker = tmp_path / "pwned"
    state = {f"w{i}": torch.zeros(1) for i in range(3)} | {"x": Payload(marker)}
    torch.save(state, tmp_path / "weights.pth")
    with pytest.raises(KitError, match=r"weights\.pth: refusing to load weights file"):
        create_backbone("tf_efficientnet_lite0", str(tmp_path / "weights.pth"))
    with pytest.raises(KitError, match="refusing"):  # the same through a config (model.weights=FILE)
        from kit.models.model import build_model

        build_model(load_config(None, [f"model.weights={tmp_path / 'weights.pth'}"]).model, 3)
    assert not marker.exists()


def test_delf_file_and_filter_command(tmp_path, capsys):
    from kit.localfeatures.delf.extractor import DelfExtractor
    from kit.localfeatures.delf.file import load_delf

    marker = tmp_path / "pwned"
    path = tmp_path / "delf.pt"
    torch.save({"backbone_name": "tf_efficientnet_lite0", "backbone": {}, "head": {}, "stride": 16,
                "label_map": [1], "pca": Payload(marker)}, path)
    with pytest.raises(KitError, match=r"delf\.pt: refusing to load DELF file"):
        load_delf(path)
    with pytest.raises(KitError, match="refusing"):
        DelfExtractor(path, device="cpu")
    from kit.predictions import Predictions, save_predictions

    pred = save_predictions(Predictions(["aaa"], [[1]], [[0.5]], np.ones((1, 4), np.float32)), tmp_path / "p.npz")
    write_one_image_set(tmp_path)
    err = one_line_error(capsys, ["filter", "delf", "--query", str(pred), "--out", str(tmp_path / "o.npz"), "--delf", str(path),
                                  "--param", "threshold=1", "--index", str(pred),
                                  "--labels", str(tmp_path / "labels.csv"), "--data-dir", str(tmp_path)])
    assert "delf.pt: refusing to load DELF file" in err
    assert not marker.exists()


def write_one_image_set(root) -> None:
    """labels.csv with one id and its image under test/ (what `kit filter delf` reads)."""
    import cv2

    pd.DataFrame({"id": ["aaa"], "landmark_id": [1]}).to_csv(root / "labels.csv", index=False)
    (root / "test" / "a" / "a" / "a").mkdir(parents=True)
    cv2.imwrite(str(root / "test" / "a" / "a" / "a" / "aaa.jpg"), np.zeros((32, 32, 3), np.uint8))


def test_kaggle_notebook_predict_stage(tmp_path, capsys):
    """The notebook runs the packaged recipe; its predict stage loads stages/<train id>/fold0/best.pt."""
    import json

    from kit.config import save_config
    from kit.kaggle.runtime import run_packaged

    marker = tmp_path / "pwned"
    make_gldv2(tmp_path)
    stages = tmp_path / "models" / "stages"
    run = stages / "e" / "fold0"
    cfg = load_config(None, [*TINY, "name=e", f"data.folds_csv={tmp_path / 'folds.csv'}"])
    evil_checkpoint(run / "best.pt", marker, config=config_to_dict(cfg))
    save_config(cfg, run / "config.yaml")
    (stages / "e" / "stage.json").write_text(json.dumps({"outputs": {
        "run": {"path": "fold0"}, "checkpoint": {"path": "fold0/best.pt"}, "config": {"path": "fold0/config.yaml"}}}))
    (stages / "folds").mkdir()
    (stages / "folds" / "folds.csv").write_text((tmp_path / "folds.csv").read_text())
    (stages / "folds" / "stage.json").write_text(json.dumps({"outputs": {"folds": {"path": "folds.csv"}}}))
    pd.DataFrame({"id": ["abc1"], "landmarks": [""]}).to_csv(tmp_path / "sample_submission.csv", index=False)
    recipe = {"name": "evil", "stages": [{"folds": {}}, {"train": {"id": "e"}},
                                         {"predict": {"model": "e", "splits": ["test"]}},
                                         {"submission": {"input": "predict"}}]}
    with pytest.raises(KitError, match="best.pt: refusing to load checkpoint"):
        run_packaged({"recipe": recipe, "files": []}, tmp_path / "models", tmp_path, tmp_path / "work")
    assert not marker.exists()


def test_kit_files_load_weights_only_and_old_numpy_rng_files_still_load(tmp_path):
    """What kit writes loads with weights_only=True; a last.pt from before (numpy RNG arrays) too."""
    from kit.train.loop import rng_state

    save_checkpoint({"model": {"w": torch.ones(2)}, "config": {}, "label_map": [5], "rng": [rng_state()]},
                    tmp_path / "new.pt")
    assert torch.load(tmp_path / "new.pt", weights_only=True)["label_map"] == [5]
    torch.save({"model": {}, "config": {}, "label_map": [5], "rng": np.random.get_state(),
                "metrics": {"gap": np.float64(0.5)}}, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    assert old["rng"][1].dtype == np.uint32 and old["metrics"]["gap"] == 0.5


def test_rng_state_round_trip_through_a_weights_only_file():
    import random

    from kit.train.loop import rng_state, set_rng_state

    np.random.seed(3), random.seed(4), torch.manual_seed(5)
    np.random.randn()  # a cached gaussian is part of numpy's state
    buf = io.BytesIO()
    torch.save(rng_state(), buf)
    expected = (np.random.rand(3).tolist(), np.random.randn(), random.random(), torch.rand(2).tolist())
    buf.seek(0)
    set_rng_state(torch.load(buf, weights_only=True))
    assert (np.random.rand(3).tolist(), np.random.randn(), random.random(), torch.rand(2).tolist()) == expected


@pytest.mark.parametrize("whiten", [True, False])
def test_delf_pca_as_plain_tensors_transforms_as_sklearn_to_the_bit(whiten):
    from sklearn.decomposition import PCA

    from kit.localfeatures.delf.file import DelfPCA

    x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    fitted = PCA(n_components=5, whiten=whiten, random_state=0).fit(x)
    buf = io.BytesIO()
    torch.save(DelfPCA.fit(x, 5, whiten).to_state(), buf)
    buf.seek(0)
    back = DelfPCA.from_state(torch.load(buf, weights_only=True))
    fitted.components_, fitted.mean_ = fitted.components_.astype(np.float64), fitted.mean_.astype(np.float64)
    fitted.explained_variance_ = fitted.explained_variance_.astype(np.float64)  # as stored: float64
    np.testing.assert_array_equal(back.transform(x), fitted.transform(x))
    earlier = {"components": torch.from_numpy(fitted.components_.astype(np.float32)), "whiten": whiten,
               "mean": torch.from_numpy(fitted.mean_.astype(np.float32)),
               "explained_variance": torch.from_numpy(fitted.explained_variance_.astype(np.float32))}
    assert np.allclose(DelfPCA.from_state(earlier).transform(x), fitted.transform(x), atol=1e-4)  # the earlier form
    with pytest.raises(KitError, match="not kit's tensor form"):
        DelfPCA.from_state(["not", "tensors"], "delf.pt")


def test_prediction_npz_with_pickled_object_array_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ids = np.empty(1, object)
    ids[0] = Payload(marker)
    np.savez(tmp_path / "p.npz", ids=ids, labels=np.zeros((1, 1), np.int64), scores=np.zeros((1, 1), np.float32))
    from kit.predictions import load_predictions

    with pytest.raises(KitError, match=r"p\.npz: cannot read prediction file"):
        load_predictions(tmp_path / "p.npz")
    assert not marker.exists()


def test_yaml_config_with_python_object_tag_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "c.yaml").write_text(f"name: !!python/object/apply:builtins.exec [\"open({str(marker)!r}, 'w')\"]\n")
    with pytest.raises(KitError, match=r"c\.yaml: invalid YAML"):
        load_config(str(tmp_path / "c.yaml"))
    assert not marker.exists()
