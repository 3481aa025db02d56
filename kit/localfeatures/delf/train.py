"""`kit train-delf`: the DELF attention head trained by kit's training loop on a frozen backbone, then the
descriptor PCA fitted on training images; the result written as `delf.pt` (kit.localfeatures.delf.file)."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
from torch import nn

from kit.config import config_to_dict
from kit.data.dataset import split_fold
from kit.images import decode_image
from kit.layout import image_path
from kit.localfeatures.delf.extractor import DelfExtractor
from kit.localfeatures.delf.file import DelfPCA
from kit.localfeatures.delf.nets import DelfModel
from kit.models.backbones import backbone_mean_std, create_backbone
from kit.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from kit.models.losses import CrossEntropyLoss
from kit.train.loop import Job, fit

log = logging.getLogger("kit.localfeatures.delf")


def source_backbone(cfg, fold: int) -> tuple[nn.Module, str]:
    """The backbone of runs/<name>/fold<N>/best.pt when it exists, else the configured pretrained one."""
    best = cfg.run_dir(fold) / "best.pt"
    if best.is_file():
        model, _, _ = load_model(best, "cpu")
        return model.backbone, str(best)
    log.warning("no %s: training DELF attention on the %s %s backbone", best, cfg.model.weights, cfg.model.backbone)
    return create_backbone(cfg.model.backbone, weights=cfg.model.weights), f"{cfg.model.weights}:{cfg.model.backbone}"


def train_delf(cfg, fold: int, epochs: int = 3, lr: float = 1e-3, hidden: int = 512, stride: int = 16,
               pca_dim: int = 40, whiten: bool = True, pca_images: int = 200, out: str | Path | None = None,
               resume: bool = False) -> Path:
    """Train the attention head (backbone frozen) on fold N's training rows with kit.train.loop (AdamW at `lr`,
    cfg's schedule, AMP on CUDA, checkpoints in runs/<name>/fold<N>/delf/, `resume` from its last.pt); fit the
    PCA; save runs/<name>/fold<N>/delf.pt (or `out`)."""
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, optimizer="adamw", lr=lr, epochs=epochs,
                                                             weight_decay=1e-4, stages=""))
    backbone, source = source_backbone(cfg, fold)
    job = Job(lambda split: (DelfModel(backbone, len(split.label_map), hidden, stride), CrossEntropyLoss()),
              ["head"] * epochs, cfg.run_dir(fold) / "delf")
    result = fit(cfg, fold, job, resume)
    path = Path(out) if out else cfg.run_dir(fold) / "delf.pt"
    if int(os.environ.get("RANK", 0)):  # under torchrun, rank 0 writes
        return path
    best = load_checkpoint(job.run_dir, "best.pt")
    model = DelfModel(backbone, len(best["label_map"]), hidden, stride)
    model.load_state_dict(best["model"])
    state = {"backbone_name": cfg.model.backbone, "backbone": model.backbone.state_dict(), "backbone_source": source,
             "stride": stride, "hidden": hidden, "head": model.head.state_dict(), "label_map": best["label_map"],
             "image_size": cfg.data.image_size, "config": config_to_dict(cfg), "best": result["best"], "pca": None,
             "mean_std": [list(v) for v in backbone_mean_std(cfg.model.backbone)]}  # the loaders' Normalize
    if pca_dim > 0:
        save_checkpoint(state, path)  # the extractor reads it back to fit the PCA
        state["pca"] = fit_pca(DelfExtractor(path, image_size=cfg.data.image_size, device=cfg.device),
                               training_images(cfg, fold, pca_images), pca_dim, whiten, cfg.seed).to_state()
    save_checkpoint(state, path)
    return path


def training_images(cfg, fold: int, n: int) -> list[np.ndarray]:
    """`n` decodable training images of the fold, drawn with cfg.seed."""
    train = split_fold(cfg, fold).train
    rows = train.sample(min(n, len(train)), random_state=cfg.seed)
    images = (decode_image(image_path(cfg.data.data_dir, "train", i)) for i in rows["id"])
    return [im for im in images if im is not None]


def fit_pca(extractor: DelfExtractor, images: list[np.ndarray], dim: int = 40, whiten: bool = True,
            seed: int = 0) -> DelfPCA:
    """The PCA of the (L2-normalised, attention-selected) descriptors of `images`."""
    extractor.pca = None
    desc = np.concatenate([f.descriptors for f in extractor.extract(images) if len(f)])
    return DelfPCA.fit(desc, dim, whiten, seed)
