"""Saliency maps (report 001): |d logit_top / d pixel|, max over the colour channels (Simonyan et al.)."""
from __future__ import annotations

import cv2
import numpy as np
import torch


def saliency_map(model, image) -> tuple[np.ndarray, int]:
    """(saliency [H, W] float32, index of the top logit) for one CHW image tensor."""
    model.eval()
    device = next(model.parameters()).device
    x = image.detach().to(device=device, dtype=torch.float32).unsqueeze(0).requires_grad_(True)
    logits = model(x)["logits"]
    top = int(logits[0].argmax())
    (grad,) = torch.autograd.grad(logits[0, top], x)
    return grad[0].abs().amax(dim=0).cpu().numpy().astype(np.float32), top


def overlay(rgb: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a saliency map (any scale, any size) as a JET heat map over an RGB uint8 image."""
    sal = cv2.resize(np.asarray(saliency, np.float32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    top = float(np.percentile(sal, 99)) or 1.0          # robust to a few extreme pixels
    heat = np.clip(sal / top * 255.0, 0, 255).astype(np.uint8)
    heat = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0)
