"""Model stages: train a fold (`kit train`) and predict image sets (`kit predict`: top-k + embeddings), each from
a kit config + `set:` overrides, with what the run decides (data, folds, seed, device, workers) filled in."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kit.config import load_config
from kit.pipeline.stage import SPLITS, choice, ref, stage
from kit.predictions import load_predictions, save_predictions


def stage_config(config: str, overrides: dict, ctx=None, folds_csv=None, name: str = "model"):
    """A validated kit Config: preset/YAML <- `set:` overrides <- what the run decides."""
    given = [f"{k}={v}" for k, v in overrides.items()]
    if ctx is not None:
        given += [f"name={name}", f"seed={ctx.run.seed}", f"device={ctx.run.device}",
                  f"data.num_workers={ctx.run.workers}", f"runs_dir={ctx.work}", f"predictions_dir={ctx.work}"]
        if ctx.data is not None:
            given.append(f"data.data_dir={ctx.data}")
        if folds_csv is not None:
            given.append(f"data.folds_csv={folds_csv}")
    return load_config(config, given)


@dataclass
class TrainSettings:
    config: str = "top2k"                              # preset (kit/configs) or YAML file
    set: dict[str, str] = field(default_factory=dict)  # config overrides, e.g. {optim.epochs: 3}
    folds: str = ref("folds", stages=("folds",))


def check_config(s: TrainSettings | PredictSettings) -> None:
    stage_config(s.config, s.set)


@stage("train", TrainSettings, kind="prepare", check=check_config)
def train_stage(s: TrainSettings, ctx) -> dict:
    """Train on every fold but the validation fold (a killed run resumes from its last checkpoint)."""
    from kit.train.loop import train as train_fold  # torch: imported when a model stage runs

    cfg = stage_config(s.config, s.set, ctx, ctx.of(s.folds)["folds"], name=ctx.dir.name)
    run = cfg.run_dir(ctx.run.val_fold)
    best = train_fold(cfg, ctx.run.val_fold, resume=(run / "last.pt").is_file())["best"]
    ctx.log(f"best epoch {best['epoch']}: val_gap {best['val_gap']:.4f}")
    return {"run": run, "checkpoint": run / "best.pt", "config": run / "config.yaml"}


@dataclass
class PredictSettings:
    model: str = ref("", stages=("train",))            # a train stage; "" = `checkpoint`
    checkpoint: str = "pretrained"                     # without a model: 'pretrained' (ImageNet) or a .pt file
    config: str = "retrieval"                          # preset or YAML (the model's own config wins for a run)
    set: dict[str, str] = field(default_factory=dict)  # config overrides, e.g. {data.image_size: 384}
    splits: list[str] = choice([], lambda: SPLITS)     # [] = train, val, test (+ distractors when DATA has them)
    folds: str = ref("folds", stages=("folds",))
    # float16: the index embeddings (train, val) are rounded to fp16, as `kit kaggle package` ships them
    index_dtype: str = choice("float32", lambda: ("float32", "float16"))
    # Kaggle notebook: index embeddings shipped in the models dataset, or "embed"ded there from the train images
    index: str = choice("shipped", lambda: ("shipped", "embed"))


INDEX_SPLITS = ("train", "val")   # labelled images: the retrieval index


@stage("predict", PredictSettings, check=check_config)
def predict(s: PredictSettings, ctx) -> dict:
    """Top-k classes and embeddings of each split -> SPLIT.npz (index splits may come packaged)."""
    from kit.inference.predict import run_predict  # torch: imported when a model stage runs

    folds = ctx.of(s.folds)["folds"]
    checkpoint = ctx.of(s.model)["checkpoint"] if s.model else s.checkpoint
    files = {}
    distractors = ["distractors"] if (ctx.data / "distractors.csv").is_file() else []
    for split in s.splits or ["train", "val", "test"] + distractors:
        out = ctx.dir / f"{split}.npz"
        packaged = ctx.shipped_file(f"{split}.npz")
        if packaged is not None:
            files[split] = packaged
            continue
        if not ctx.wants(split) and not (s.index == "embed" and split in INDEX_SPLITS):
            continue
        cfg = stage_config(s.config, s.set, ctx, folds, name=ctx.dir.name)
        run_predict(cfg, ctx.run.val_fold, split, checkpoint=checkpoint, out=out, log=ctx.log)
        if s.index_dtype == "float16" and split in INDEX_SPLITS:
            p = load_predictions(out)
            p.embeddings = p.embeddings.astype(np.float16).astype(np.float32)
            save_predictions(p, out)
        files[split] = out
    return {"splits": files}
