"""The prediction stage: a trained fold's best checkpoint over val (prints GAP), test, train (the retrieval
index) or distractor images -> `predictions/<name>/<split>_fold<N>.npz` and the resolved config beside it."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kit.errors import KitError
from kit.predictions import Predictions

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("kit.inference.predict")
SPLITS = ("val", "test", "train", "distractors")


def split_rows(cfg, fold: int, split: str) -> tuple[pd.DataFrame, str]:
    """(rows with `id` [and `landmark_id`] to predict, image folder 'train' | 'test' | 'distractors'); missing
    images are skipped (an error with data.strict). distractors: DATA/distractors.csv (for fitting filters)."""
    import pandas as pd

    from kit.data.dataset import drop_missing, read_folds
    from kit.submission import read_sample_ids

    if split not in SPLITS:
        raise KitError(f"unknown split '{split}' (valid: {', '.join(SPLITS)})")
    if split == "test":
        rows, folder = pd.DataFrame({"id": read_sample_ids(Path(cfg.data.data_dir) / "sample_submission.csv")}), "test"
    elif split == "distractors":
        from kit.csvfiles import read_csv
        from kit.ids import clean_ids

        path = Path(cfg.data.data_dir) / "distractors.csv"
        rows = read_csv(path, ("id",), dtype={"id": str}, keep_default_na=False)[["id"]]
        if rows.empty:
            raise KitError(f"{path}: no data rows (only a header)")
        rows["id"], folder = clean_ids(path, rows["id"]), "distractors"
    else:
        df, _ = read_folds(cfg.data.folds_csv, fold)
        keep = df["fold"] == fold if split == "val" else (df["fold"] != fold) & (df["fold"] != -1)
        rows, folder = df.loc[keep, ["id", "landmark_id"]].reset_index(drop=True), "train"
    rows, _ = drop_missing(rows, cfg.data.data_dir, cfg.data.strict, folder)
    if rows.empty:
        raise KitError(f"{cfg.data.data_dir}: no {split} images to predict for fold {fold}")
    return rows, folder


def pretrained_model(cfg, device):
    """No training: the config's pretrained backbone and pooling, no neck and a dummy one-class head: the
    zero-training retrieval baseline (its labels are blanked by `predict_split`)."""
    import copy

    from kit.models.model import build_model

    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.embedding_dim, model_cfg.head, model_cfg.se_attention = 0, "linear", False
    return build_model(model_cfg, 1).to(device).eval(), cfg, [-1]


def predict_split(cfg, fold: int, split: str, checkpoint=None, progress: bool = True) -> Predictions:
    """Load runs/<name>/fold<N>/best.pt (or `checkpoint`) and predict the split's images in batches.
    checkpoint="pretrained": no trained run, embeddings of the pretrained backbone (`pretrained_model`)."""
    from kit.models.checkpoint import load_model
    from kit.data.dataset import LandmarkDataset, make_loader
    from kit.inference.engine import get_tta, predict_loader, use_low_precision
    from kit.device import choose_device

    device = choose_device(cfg.device)
    pretrained = str(checkpoint) == "pretrained"
    model, trained_cfg, label_map = (pretrained_model(cfg, device) if pretrained
                                     else load_model(checkpoint or cfg.run_dir(fold), device))
    cfg.model = trained_cfg.model  # the checkpoint decides the model (and so its input normalisation)
    if trained_cfg.data.image_size != cfg.data.image_size:
        log.warning("predicting at %d px, the model was trained at %d px", cfg.data.image_size,
                    trained_cfg.data.image_size)
    rows, folder = split_rows(cfg, fold, split)
    ds = LandmarkDataset.from_config(rows, cfg, train=False, split=folder)
    loader = make_loader(ds, cfg.predict.batch_size, False, cfg.seed, cfg.data.num_workers, device.type)
    pred = predict_loader(model, loader, label_map, cfg.predict.topk, device,
                          tta=get_tta(cfg.predict.tta, scales=tuple(cfg.predict.scales)),
                          amp=use_low_precision(cfg.predict.precision, device, cfg.optim.amp), progress=progress,
                          desc=f"predict {split}", embedding=cfg.predict.embedding,
                          channels_last=cfg.optim.channels_last)
    if pretrained:  # embeddings only: no class predictions
        pred = Predictions(pred.ids, np.full(pred.labels.shape, -1), np.zeros(pred.scores.shape), pred.embeddings)
    return pred


def prediction_path(cfg, fold: int, split: str) -> Path:
    return Path(cfg.predictions_dir) / cfg.name / f"{split}_fold{fold}.npz"


def val_gap(pred: Predictions, folds_csv, fold: int) -> float:
    """GAP of predictions on folds-CSV images against their landmark ids (skipped images not counted)."""
    from kit.data.dataset import read_folds
    from kit.metrics import gap

    df, _ = read_folds(folds_csv, fold)
    truth = df.set_index("id")["landmark_id"].reindex(pred.ids).fillna(-1).to_numpy(np.int64)
    return gap(*pred.top1, truth, pred.ids)


def run_predict(cfg, fold: int, split: str, submission=None, checkpoint=None, out=None, log=print) -> dict:
    """Predict, write the .npz (+ resolved config) and optionally a submission CSV; val prints GAP."""
    from kit.config import save_config
    from kit.predictions import save_predictions
    from kit.submission import read_sample_ids, write_submission

    pred = predict_split(cfg, fold, split, checkpoint)
    path = save_predictions(pred, out or prediction_path(cfg, fold, split))
    save_config(cfg, path.with_suffix(".yaml"))
    result = {"predictions": pred, "path": path}
    log(f"wrote {path} ({len(pred)} images, top-{pred.labels.shape[1]}, tta {cfg.predict.tta})")
    if split == "val":
        result["gap"] = val_gap(pred, cfg.data.folds_csv, fold)
        log(f"val GAP {result['gap']:.6f}")
    if submission:
        if split == "test":  # every sample id gets a row; skipped images stay empty
            pred = pred.reindex(read_sample_ids(Path(cfg.data.data_dir) / "sample_submission.csv"))
        result["submission"] = write_submission(pred, submission)
        log(f"wrote {submission}")
    return result
