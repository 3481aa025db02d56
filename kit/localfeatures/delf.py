"""DELF (Noh et al. 2017; reports 001, 003): attention-selected local descriptors from a kit backbone.

The head sits on a mid-level (default stride-16) feature map of a frozen backbone: 1x1 conv -> BN ->
ReLU -> 1x1 conv -> softplus gives one attention score per location. It is trained with the
classification loss of the attention-weighted mean of the L2-normalised features, so locations that
identify the landmark score high. Extraction runs an image pyramid, keeps the top-scoring locations,
L2-normalises them, reduces them with a PCA (optionally whitened) fitted on training images, and
places each keypoint at its receptive-field centre.

`delf.pt` (atomic): backbone name + state_dict (self-contained), stride, head state_dict, label_map,
the sklearn PCA object (or None), image_size and the training config.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kit.data.dataset import has_images
from kit.device import choose_device
from kit.errors import KitError
from kit.inference.search import l2n
from kit.localfeatures.base import LocalFeatures

log = logging.getLogger("kit.localfeatures.delf")

DELF_SCALES = [0.25, 0.3536, 0.5, 0.7071, 1.0, 1.4142, 2.0]  # the DELF paper's pyramid
CHEAP_SCALES = [0.7071, 1.0, 1.4142]


class DelfAttention(nn.Module):
    """Attention scores [B, 1, h, w] >= 0: 1x1 conv -> BN -> ReLU -> 1x1 conv -> softplus."""

    def __init__(self, in_channels: int, hidden: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 1)
        self.bn = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, 1, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.conv2(F.relu(self.bn(self.conv1(f)))))


def attention_pool(features: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """[B, C]: mean over locations of score * L2-normalised feature (the DELF training signal)."""
    return (F.normalize(features, dim=1) * scores).mean(dim=(2, 3))


class DelfHead(nn.Module):
    """Attention + a linear classifier on the attention-pooled features (the classifier only trains)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 512):
        super().__init__()
        self.attention = DelfAttention(in_channels, hidden)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> dict:
        scores = self.attention(features)
        return {"scores": scores, "logits": self.classifier(attention_pool(features, scores))}


def stage_index(backbone: nn.Module, stride: int) -> int:
    """Index of the timm feature stage with reduction `stride` (KitError listing the ones there are)."""
    reductions = [int(f["reduction"]) for f in backbone.feature_info]
    if stride not in reductions:
        raise KitError(f"delf: backbone has no stride-{stride} stage (strides: {reductions})")
    return reductions.index(stride)


def stage_features(backbone: nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
    """Feature map of stage `index`, stopping the forward pass there (timm forward_intermediates)."""
    return backbone.forward_intermediates(x, indices=[index], intermediates_only=True, stop_early=True)[0]


def stage_channels(backbone: nn.Module, index: int) -> int:
    return int(backbone.feature_info[index]["num_chs"])


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


# ----------------------------------------------------------------------------------- extraction
class DelfExtractor:
    """Local features from a trained `delf.pt`, or, without one, from a packaged backbone alone.

    Without a trained head the score of a location is its feature's L2 norm (a weight-free saliency
    proxy) and no PCA is applied. Images are resized to `image_size` square (keypoints are in that
    frame; the per-image aspect change is an affine map that RANSAC absorbs), so a whole batch runs
    through each pyramid scale at once.
    """

    name = "delf"

    def __init__(self, delf: str | Path | None = None, backbone: str = "tf_efficientnet_lite0",
                 weights: str = "packaged", stride: int = 16, image_size: int = 256,
                 scales: list[float] | None = None, max_keypoints: int = 1000, device: str = "auto",
                 batch_size: int = 16, margin: float = 0.125, distinct: float = 0.85, **_):
        from kit.models.backbones import backbone_mean_std, create_backbone

        self.device = choose_device(device)
        self.scales = [float(s) for s in (scales or CHEAP_SCALES)]
        self.image_size, self.max_keypoints, self.batch_size = int(image_size), int(max_keypoints), int(batch_size)
        self.head, self.pca, self.margin, self.distinct = None, None, float(margin), float(distinct)
        if delf:
            state = load_delf(delf)
            self.source = {"delf": str(Path(delf).resolve()), "mtime": Path(delf).stat().st_mtime_ns}
            backbone, stride = state["backbone_name"], int(state["stride"])
            self.backbone = create_backbone(backbone, weights="none")
            self.backbone.load_state_dict(state["backbone"])
            self.index = stage_index(self.backbone, stride)
            self.head = DelfHead(stage_channels(self.backbone, self.index), len(state["label_map"]),
                                 state["hidden"])
            self.head.load_state_dict(state["head"])
            freeze(self.head).to(self.device)
            self.pca = pca_from_state(state.get("pca"), delf)
            mean, std = state.get("mean_std") or backbone_mean_std(backbone)
        else:
            self.source = {"backbone": backbone, "weights": weights}
            self.backbone = create_backbone(backbone, weights=weights)
            self.index = stage_index(self.backbone, stride)
            mean, std = backbone_mean_std(backbone)
        self.stride = stride
        freeze(self.backbone).to(self.device, memory_format=torch.channels_last)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255

    def config(self) -> dict:
        return {"name": self.name, **self.source, "stride": self.stride, "image_size": self.image_size,
                "scales": self.scales, "max_keypoints": self.max_keypoints, "margin": self.margin,
                "distinct": self.distinct}

    @torch.inference_mode()
    def dense(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage features [B, C, h, w] and location scores [B, h, w] of a normalised batch."""
        f = stage_features(self.backbone, batch, self.index)
        s = self.head.attention(f)[:, 0] if self.head is not None else f.norm(dim=1)
        return f, s

    def to_batch(self, images: list[np.ndarray]) -> torch.Tensor:
        import cv2

        size = (self.image_size, self.image_size)
        arr = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images])
        x = torch.from_numpy(arr).to(self.device).permute(0, 3, 1, 2).float()
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def _distinct(self, xy: torch.Tensor, desc: torch.Tensor) -> torch.Tensor:
        """Mask of descriptors with no near-copy (cosine >= `distinct`) farther than 1.5 cells away in the
        same image: flat or repetitive areas (sky, walls) match anything and only add false inliers."""
        far = torch.cdist(xy, xy) > 1.5 * self.stride
        sim = torch.where(far, desc @ desc.T, torch.full((), -1.0, device=desc.device))
        return sim.max(dim=1).values < self.distinct

    def extract(self, images: list[np.ndarray]) -> list[LocalFeatures]:
        out = []
        for start in range(0, len(images), self.batch_size):
            out += self._extract_batch(images[start:start + self.batch_size])
        return out

    def _extract_batch(self, images: list[np.ndarray]) -> list[LocalFeatures]:
        # Reflect-pad by `margin` of the side and drop the cells centred in the margin: zero padding makes
        # features near the border encode their position, so flat borders of unrelated images would
        # otherwise match in place (an identity transform with many inliers).
        size = self.image_size
        pad = round(self.margin * size)
        base = self.to_batch(images)
        if pad:
            base = F.pad(base, (pad, pad, pad, pad), mode="reflect")
        full = size + 2 * pad
        per_image = [[] for _ in images]  # (xy in the working frame, desc, score) per scale
        for scale in self.scales:
            side = max(self.stride, round(full * scale))
            x = base if side == full else F.interpolate(base, size=(side, side), mode="bilinear",
                                                        align_corners=False, antialias=scale < 1)
            f, s = self.dense(x)
            b, c, h, w = f.shape
            # receptive-field centre of cell (i, j): ((j + 0.5) / w, (i + 0.5) / h) of the padded side
            ys, xs = torch.meshgrid((torch.arange(h, device=f.device) + 0.5) * full / h - pad,
                                    (torch.arange(w, device=f.device) + 0.5) * full / w - pad, indexing="ij")
            xy = torch.stack([xs, ys], -1).reshape(-1, 2)
            inside = ((xy >= 0) & (xy < size)).all(1)
            desc = F.normalize(f, dim=1).permute(0, 2, 3, 1).reshape(b, h * w, c)[:, inside]
            score = s.reshape(b, h * w)[:, inside]
            for i in range(b):
                per_image[i].append((xy[inside], desc[i], score[i]))
        feats = []
        for parts in per_image:
            xy, desc, score = (torch.cat([p[k] for p in parts]) for k in range(3))
            if self.distinct < 1:
                keep = self._distinct(xy, desc)
                xy, desc, score = xy[keep], desc[keep], score[keep]
            top = torch.topk(score, min(self.max_keypoints, len(score))).indices
            xy, desc, score = (t[top].float().cpu().numpy() for t in (xy, desc, score))
            if self.pca is not None:
                desc = self.pca.transform(desc)
            feats.append(LocalFeatures(xy.astype(np.float32), l2n(desc).astype(np.float32), score.astype(np.float32)))
        return feats


# ------------------------------------------------------------------------------------- training
def loader_mean_std(loader) -> tuple[list[float], list[float]] | None:
    """Mean/std of the Normalize step in a kit.data.dataset loader's transform: extraction must normalise
    exactly as the backbone and head were trained."""
    import albumentations as A

    for t in getattr(loader.dataset.transform, "transforms", []):
        if isinstance(t, A.Normalize):
            return [float(v) for v in np.ravel(t.mean)], [float(v) for v in np.ravel(t.std)]
    return None


def load_delf(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path}: DELF file not found (run `kit train-delf` first)")
    from kit.models.safe_load import load_torch_file

    state = load_torch_file(path, "DELF file")  # weights only: the PCA is stored as tensors
    if not isinstance(state, dict):
        raise KitError(f"{path}: not a DELF file (a {type(state).__name__}, not a dict)")
    missing = [k for k in ("backbone_name", "backbone", "head", "stride", "label_map") if k not in state]
    if missing:
        raise KitError(f"{path}: not a DELF file (missing {', '.join(missing)})")
    return state


def source_backbone(cfg, fold: int, device) -> tuple[nn.Module, str]:
    """The backbone of runs/<name>/fold<N>/best.pt when it exists, else the configured pretrained one."""
    from kit.models.backbones import create_backbone

    best = cfg.run_dir(fold) / "best.pt"
    if best.is_file():
        from kit.models.checkpoint import load_model

        model, _, _ = load_model(best, device)
        return model.backbone, str(best)
    log.warning("no %s: training DELF attention on the %s %s backbone", best, cfg.model.weights, cfg.model.backbone)
    return create_backbone(cfg.model.backbone, weights=cfg.model.weights), f"{cfg.model.weights}:{cfg.model.backbone}"


def pca_to_state(pca) -> dict:
    """A fitted sklearn PCA as tensors + a flag: what a DELF file stores (loadable weights-only)."""
    return {"components": torch.from_numpy(pca.components_.astype(np.float32)),
            "mean": torch.from_numpy(pca.mean_.astype(np.float32)),
            "explained_variance": torch.from_numpy(pca.explained_variance_.astype(np.float32)),
            "whiten": bool(pca.whiten)}


def pca_from_state(state, path=None):
    """The sklearn PCA that `pca_to_state` stored (None stays None): transform() gives the same output."""
    from sklearn.decomposition import PCA

    if state is None:
        return None
    if not isinstance(state, dict) or not all(torch.is_tensor(state.get(k)) for k in
                                                ("components", "mean", "explained_variance")):
        raise KitError(f"{path}: DELF file: 'pca' is not kit's tensor form (retrain with `kit train-delf`)")
    comp = state["components"].double().numpy()
    pca = PCA(n_components=comp.shape[0], whiten=bool(state.get("whiten", False)))
    pca.components_, pca.mean_ = comp, state["mean"].double().numpy()
    pca.explained_variance_ = state["explained_variance"].double().numpy()
    pca.n_components_, pca.n_features_in_ = comp.shape[0], comp.shape[1]
    return pca


def fit_pca(extractor: DelfExtractor, images: list[np.ndarray], dim: int = 40, whiten: bool = True, seed: int = 0):
    """sklearn PCA of the (L2-normalised, attention-selected) descriptors of training images."""
    from sklearn.decomposition import PCA

    extractor.pca = None
    desc = np.concatenate([f.descriptors for f in extractor.extract(images) if len(f)])
    dim = min(dim, desc.shape[1], len(desc))
    return PCA(n_components=dim, whiten=whiten, random_state=seed).fit(desc)


def train_delf(cfg, fold: int, epochs: int = 3, lr: float = 1e-3, hidden: int = 512, stride: int = 16,
               pca_dim: int = 40, whiten: bool = True, pca_images: int = 200, out: str | Path | None = None,
               progress: bool = True) -> Path:
    """Train the attention head (backbone frozen) on fold N's training rows; save runs/<name>/fold<N>/delf.pt."""
    from kit.progress import progress as progress_bar

    from kit.models.checkpoint import save_checkpoint
    from kit.config import config_to_dict
    from kit.data.dataset import make_loaders, set_epoch
    from kit.images import decode_image

    torch.manual_seed(cfg.seed)
    device = choose_device(cfg.device)
    backbone, source = source_backbone(cfg, fold, device)
    backbone = freeze(backbone).to(device)
    index = stage_index(backbone, stride)
    loaders = make_loaders(cfg, fold, device_type=device.type)
    label_map = loaders.split.label_map
    head = DelfHead(stage_channels(backbone, index), len(label_map), hidden).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps = cfg.optim.max_steps_per_epoch or None
    history = []
    for epoch in range(epochs):
        set_epoch(loaders.train, epoch)
        head.train()
        t0, total, n = time.time(), 0.0, 0
        bar = progress_bar(loaders.train, desc=f"delf epoch {epoch + 1}/{epochs}", total=steps, disable=not progress)
        for step, batch in enumerate(bar):
            if steps and step >= steps:
                break
            if not has_images(batch):
                continue
            x, y = batch["image"].to(device), batch["label"].to(device)
            with torch.no_grad():
                f = stage_features(backbone, x, index)
            loss = F.cross_entropy(head(f)["logits"], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(y), n + len(y)
            bar.set_postfix(loss=f"{total / max(n, 1):.4f}")
        acc = evaluate_head(backbone, head, index, loaders.val, device, steps)
        history.append({"epoch": epoch + 1, "loss": total / max(n, 1), "val_acc": acc, "seconds": time.time() - t0})
        log.info("delf epoch %d: loss %.4f val acc %.4f", epoch + 1, total / max(n, 1), acc)
    state = {"backbone_name": cfg.model.backbone, "backbone": backbone.state_dict(), "backbone_source": source,
             "stride": stride, "hidden": hidden, "head": head.state_dict(), "label_map": list(label_map),
             "image_size": cfg.data.image_size, "config": config_to_dict(cfg), "history": history, "pca": None,
             "mean_std": loader_mean_std(loaders.train)}
    path = Path(out) if out else cfg.run_dir(fold) / "delf.pt"
    if pca_dim > 0:
        save_checkpoint(state, path)  # the extractor reads it back to fit the PCA
        ext = DelfExtractor(path, image_size=cfg.data.image_size, device=str(device))
        rows = loaders.split.train.sample(min(pca_images, len(loaders.split.train)), random_state=cfg.seed)
        from kit.layout import image_path

        images = [im for im in (decode_image(image_path(cfg.data.data_dir, "train", i)) for i in rows["id"])
                  if im is not None]
        state["pca"] = pca_to_state(fit_pca(ext, images, pca_dim, whiten, cfg.seed))
    save_checkpoint(state, path)
    return path


@torch.no_grad()
def evaluate_head(backbone, head, index, loader, device, max_steps=None) -> float:
    """Top-1 accuracy of the DELF classifier on a loader (a sanity check that attention learned)."""
    head.eval()
    right = seen = 0
    for step, batch in enumerate(loader):
        if max_steps and step >= max_steps:
            break
        if not has_images(batch):
            continue
        x, y = batch["image"].to(device), batch["label"].to(device)
        pred = head(stage_features(backbone, x, index))["logits"].argmax(1)
        right, seen = right + int((pred == y).sum()), seen + len(y)
    return right / max(seen, 1)
