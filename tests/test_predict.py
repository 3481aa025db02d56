"""`kit predict` / `kit to-submission` on a tiny generated data set and a random-weight tiny checkpoint,
checked against the model run directly on the same images."""
import numpy as np
import pandas as pd
import pytest
import torch

from kit.cli import main
from kit.layout import image_path
from kit.predictions import load_predictions

LANDMARKS = [10, 20, 30]


def _write_image(path, colour, rng):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.clip(np.array(colour) + rng.normal(0, 20, size=(40, 48, 3)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from kit.models.checkpoint import save_checkpoint
    from kit.config import config_to_dict, load_config
    from kit.models.model import build_model

    root = tmp_path_factory.mktemp("pred")
    data, rng = root / "data", np.random.default_rng(0)
    rows = []
    for c, lm in enumerate(LANDMARKS):
        for j in range(4):
            i = f"{c}{j}{'a' * 14}"
            _write_image(image_path(data, "train", i), [60 * c + 40, 120, 200 - 60 * c], rng)
            rows.append((i, lm, c, j % 2))
    folds = pd.DataFrame(rows, columns=["id", "landmark_id", "label", "fold"])
    folds.to_csv(root / "folds.csv", index=False)
    test_ids = [f"f{j}{'b' * 14}" for j in range(4)]
    for j, i in enumerate(test_ids[:3]):  # the 4th test image is missing on disk
        _write_image(image_path(data, "test", i), [60 * j + 40, 120, 200 - 60 * j], rng)
    pd.DataFrame({"id": test_ids, "landmarks": ""}).to_csv(data / "sample_submission.csv", index=False)
    overrides = [f"data.data_dir={data}", f"data.folds_csv={root / 'folds.csv'}", "data.image_size=32",
                 "data.augment=none", "data.num_workers=0", "model.backbone=test_resnet", "model.weights=none",
                 "model.embedding_dim=8", f"runs_dir={root / 'runs'}", f"predictions_dir={root / 'subs'}",
                 "device=cpu", "predict.batch_size=5", "name=tiny"]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, len(LANDMARKS)).eval()
    save_checkpoint({"model": model.state_dict(), "config": config_to_dict(cfg), "label_map": LANDMARKS,
                     "class_counts": [2, 2, 2], "epoch": 1, "metrics": {}}, cfg.run_dir(0) / "best.pt")
    return root, data, folds, test_ids, overrides, model


def _direct(model, data, folder, ids, flip=False):
    """Softmax probabilities and embeddings of the model run by hand on the val transform."""
    from kit.data.augment import build_transforms
    from kit.models.backbones import backbone_mean_std
    from kit.images import decode_image

    mean, std = backbone_mean_std("test_resnet")  # the normalisation the backbone's weights expect
    tf = build_transforms("none", 32, False, mean=mean, std=std)
    x = torch.stack([tf(image=decode_image(image_path(data, folder, i)))["image"] for i in ids])
    with torch.no_grad():
        outs = [model(x)] + ([model(x.flip(3))] if flip else [])
    probs = sum(torch.softmax(o["logits"], 1) for o in outs) / len(outs)
    emb = torch.nn.functional.normalize(sum(torch.nn.functional.normalize(o["embeddings"], dim=1) for o in outs), dim=1)
    return probs.numpy(), emb.numpy()


def test_predict_val_matches_direct_forward(setup, capsys):
    root, data, folds, _, overrides, model = setup
    assert main(["predict", "--fold", "0", "--split", "val", *overrides]) == 0
    pred = load_predictions(root / "subs" / "tiny" / "val_fold0.npz")
    val_ids = folds.loc[folds["fold"] == 0, "id"].tolist()
    assert pred.ids.tolist() == val_ids
    probs, emb = _direct(model, data, "train", val_ids)
    order = np.argsort(-probs, axis=1)
    np.testing.assert_array_equal(pred.labels[:, :3], np.array(LANDMARKS)[order])
    np.testing.assert_array_equal(pred.labels[:, 3:], -1)  # topk 5 > 3 classes: padded
    np.testing.assert_allclose(pred.scores[:, :3], np.take_along_axis(probs, order, 1), atol=1e-5)
    np.testing.assert_allclose(pred.embeddings, emb, atol=1e-5)
    assert (root / "subs" / "tiny" / "val_fold0.yaml").is_file()
    out = capsys.readouterr().out
    assert "val GAP" in out


def test_predict_hflip_averages_views(setup):
    root, data, folds, _, overrides, model = setup
    out = root / "hflip.npz"
    assert main(["predict", "--split", "val", "--tta", "hflip", "--out", str(out), *overrides]) == 0
    pred = load_predictions(out)
    probs, emb = _direct(model, data, "train", pred.ids.tolist(), flip=True)
    np.testing.assert_allclose(pred.scores[:, 0], probs.max(axis=1), atol=1e-5)
    np.testing.assert_allclose(pred.embeddings, emb, atol=1e-5)


def test_predict_train_and_test_with_submission(setup):
    root, data, folds, test_ids, overrides, model = setup
    assert main(["predict", "--split", "train", *overrides]) == 0
    train = load_predictions(root / "subs" / "tiny" / "train_fold0.npz")
    assert train.ids.tolist() == folds.loc[folds["fold"] == 1, "id"].tolist()
    sub = root / "submission.csv"
    assert main(["predict", "--split", "test", "--submission", str(sub), *overrides]) == 0
    test = load_predictions(root / "subs" / "tiny" / "test_fold0.npz")
    assert test.ids.tolist() == test_ids[:3]  # the missing image is skipped ...
    df = pd.read_csv(sub, dtype=str, keep_default_na=False)
    assert df["id"].tolist() == test_ids  # ... but keeps an empty row in the submission
    assert df["landmarks"].iloc[3] == ""
    lab, score = df["landmarks"].iloc[0].split()
    assert int(lab) == test.labels[0, 0] and float(score) == pytest.approx(test.scores[0, 0])
    # to-submission: same CSV from the prediction file
    sub2 = root / "sub2.csv"
    assert main(["to-submission", str(root / "subs" / "tiny" / "test_fold0.npz"), "--out", str(sub2),
                 "--sample", str(data / "sample_submission.csv")]) == 0
    assert sub2.read_text() == sub.read_text()


def test_predict_errors_are_one_line(setup, capsys):
    _, _, _, _, overrides, _ = setup
    assert main(["predict", "--fold", "1", "--split", "val", *overrides]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_predict_pretrained_gives_backbone_embeddings_and_no_labels(setup):
    """--checkpoint pretrained: no trained run; embeddings = L2-normalised pooled backbone features
    (the neck is dropped), labels blank. Zero-training retrieval baseline."""
    from kit.config import load_config
    from kit.models.model import build_model

    root, data, folds, _, overrides, _ = setup
    out = root / "pre.npz"
    assert main(["predict", "--split", "val", "--checkpoint", "pretrained", "--out", str(out), *overrides]) == 0
    pred = load_predictions(out)
    assert (pred.labels == -1).all() and (pred.scores == 0).all()
    cfg = load_config(None, overrides + ["model.embedding_dim=0"])
    torch.manual_seed(0)
    model = build_model(cfg.model, 1).eval()
    _, emb = _direct(model, data, "train", pred.ids.tolist())
    # weights=none gives a random backbone; the same seed is not shared, so compare shapes and norms,
    # and the pooled width: no 8-d neck
    assert pred.embeddings.shape == emb.shape == (len(pred), model.backbone.num_features)
    np.testing.assert_allclose(np.linalg.norm(pred.embeddings, axis=1), 1.0, atol=1e-5)
