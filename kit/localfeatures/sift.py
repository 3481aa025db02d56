"""OpenCV SIFT / RootSIFT local features: weight-free, the default verifier."""
from __future__ import annotations

import numpy as np

from kit.inference.search import l2n
from kit.localfeatures.base import LocalFeatures


class SiftExtractor:
    """OpenCV SIFT on the grey image resized to `image_size` on its longest side; RootSIFT optional."""

    name = "sift"

    def __init__(self, image_size: int = 256, max_keypoints: int = 1000, rootsift: bool = True, **_):
        self.image_size, self.max_keypoints, self.rootsift = int(image_size), int(max_keypoints), bool(rootsift)

    def config(self) -> dict:
        return {"name": self.name, "image_size": self.image_size, "max_keypoints": self.max_keypoints,
                "rootsift": self.rootsift}

    def _one(self, img: np.ndarray) -> LocalFeatures:
        import cv2

        h, w = img.shape[:2]
        s = self.image_size / max(h, w)
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if s != 1:
            grey = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        kps, desc = cv2.SIFT_create(nfeatures=self.max_keypoints).detectAndCompute(grey, None)
        if desc is None or len(kps) == 0:
            return LocalFeatures.empty(128)
        desc = desc.astype(np.float32)
        if self.rootsift:  # Arandjelovic & Zisserman 2012: Hellinger kernel via L1-normalise + sqrt
            desc = np.sqrt(desc / np.maximum(desc.sum(1, keepdims=True), 1e-12))
        pts = np.array([k.pt for k in kps], np.float32)
        resp = np.array([k.response for k in kps], np.float32)
        return LocalFeatures(pts, l2n(desc).astype(np.float32), resp)

    def extract(self, images: list[np.ndarray]) -> list[LocalFeatures]:
        return [self._one(img) for img in images]
