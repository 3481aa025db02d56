"""DELF extraction: an image pyramid through the backbone stage, the top-scoring locations kept, L2-normalised,
reduced by the PCA of the DELF file (optionally whitened), each keypoint at its receptive-field centre."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from kit.device import choose_device
from kit.inference.search import l2n
from kit.localfeatures.base import LocalFeatures
from kit.localfeatures.delf.file import DelfPCA, load_delf
from kit.localfeatures.delf.nets import DelfModel, freeze, stage_features, stage_index
from kit.models.backbones import backbone_mean_std, create_backbone

DELF_SCALES = [0.25, 0.3536, 0.5, 0.7071, 1.0, 1.4142, 2.0]  # the DELF paper's pyramid
CHEAP_SCALES = [0.7071, 1.0, 1.4142]


class DelfExtractor:
    """Local features from a trained `delf.pt`, or from a packaged backbone alone (a location's score: its
    feature's L2 norm; no PCA). Images are resized to `image_size` square (an aspect change RANSAC absorbs), so a
    batch runs through each pyramid scale at once."""

    name = "delf"

    def __init__(self, delf: str | Path | None = None, backbone: str = "tf_efficientnet_lite0",
                 weights: str = "packaged", stride: int = 16, image_size: int = 256,
                 scales: list[float] | None = None, max_keypoints: int = 1000, device: str = "auto",
                 batch_size: int = 16, margin: float = 0.125, distinct: float = 0.85, **_):
        self.device = choose_device(device)
        self.scales = [float(s) for s in (scales or CHEAP_SCALES)]
        self.image_size, self.max_keypoints, self.batch_size = int(image_size), int(max_keypoints), int(batch_size)
        self.head, self.pca, self.margin, self.distinct = None, None, float(margin), float(distinct)
        if delf:
            state = load_delf(delf)
            self.source = {"delf": str(Path(delf).resolve()), "mtime": Path(delf).stat().st_mtime_ns}
            backbone, stride = state["backbone_name"], int(state["stride"])
            model = DelfModel(create_backbone(backbone, weights="none"), len(state["label_map"]), state["hidden"],
                              stride)
            model.backbone.load_state_dict(state["backbone"])
            model.head.load_state_dict(state["head"])
            self.backbone, self.head, self.index = model.backbone, freeze(model.head).to(self.device), model.index
            self.pca = DelfPCA.from_state(state.get("pca"), delf)
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
        return [f for start in range(0, len(images), self.batch_size)
                for f in self._extract_batch(images[start:start + self.batch_size])]

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
