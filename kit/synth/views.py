"""Perspective "photos" of a structure: random homography (two views: H2 @ inv(H1)), clutter, occlusion, lighting."""
from __future__ import annotations

import cv2
import numpy as np

from kit.synth.scenes import add_occluders, street_background

SUPERSAMPLE = 2  # views are drawn at 2x and area-downsampled: no aliasing, photo-like softness


def random_homography(rng: np.random.Generator, size: int, src_size: int | None = None,
                      scale: tuple[float, float] = (0.75, 1.5)) -> np.ndarray:
    """A 3x3 homography from a src_size square into the view: scale, position, rotation, yaw/tilt, corner jitter."""
    S = float(src_size or size)
    src = np.array([(0, 0), (S, 0), (S, S), (0, S)], np.float32)
    L = size * rng.uniform(*scale)
    q = np.array([(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)], np.float64) * L
    yaw, tilt = rng.uniform(-0.35, 0.35), rng.uniform(-0.1, 0.3)
    q[:, 1] *= 1.0 - yaw * np.sign(q[:, 0])           # one side nearer the camera
    q[:, 0] *= 1.0 - 0.4 * abs(yaw)
    q[q[:, 1] < 0, 0] *= 1.0 - tilt                   # looking up: the top recedes
    q += rng.normal(0.0, 0.025 * L, q.shape)
    theta = float(np.clip(rng.normal(0.0, 0.08), -0.25, 0.25))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = size / 2.0 + rng.uniform(-0.2, 0.2, 2) * size
    dst = (q @ rot.T + centre).astype(np.float32)
    return cv2.getPerspectiveTransform(src, dst)


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting and camera changes: gamma, contrast, brightness, colour cast, a shadow ramp, noise, blur."""
    x = img.astype(np.float32) / 255.0
    x = x ** rng.uniform(0.7, 1.4)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.7, 1.3) + mean + rng.uniform(-0.12, 0.12)
    x *= 1.0 + rng.normal(0.0, 0.06, 3).astype(np.float32)
    if rng.random() < 0.4:
        h, w = x.shape[:2]
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (np.cos(a) * xx / w + np.sin(a) * yy / h)
        ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
        x *= (1.0 - rng.uniform(0.1, 0.45) * ramp)[..., None]
    x += rng.normal(0.0, rng.uniform(0.0, 0.02), x.shape).astype(np.float32)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 0.9))
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def warp_view(structure: np.ndarray, H: np.ndarray, size: int, rng: np.random.Generator | None = None,
              clutter: bool = True, mask: np.ndarray | None = None) -> np.ndarray:
    """`structure` warped by H over clutter through `mask`; with `rng` also occluders and lighting, else a clean warp."""
    f, big = SUPERSAMPLE, SUPERSAMPLE * size
    A = np.array([[f, 0, (f - 1) / 2.0], [0, f, (f - 1) / 2.0], [0, 0, 1]], np.float64)
    Hs = A @ np.asarray(H, np.float64)
    canvas = (street_background(rng if rng is not None else np.random.default_rng(0), big).astype(np.float32)
              if clutter else np.full((big, big, 3), 128.0, np.float32))
    src_mask = mask if mask is not None else np.full(structure.shape[:2], 255, np.uint8)
    warped = cv2.warpPerspective(structure, Hs, (big, big), flags=cv2.INTER_LINEAR).astype(np.float32)
    alpha = cv2.warpPerspective(src_mask, Hs, (big, big), flags=cv2.INTER_LINEAR).astype(np.float32)[..., None] / 255.0
    # with a mask the structure is black off its silhouette: `warped` is already premultiplied
    canvas = canvas * (1.0 - alpha) + (warped if mask is not None else warped * alpha)
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    if rng is not None:
        add_occluders(canvas, rng)
    img = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return photometric(img, rng) if rng is not None else img


def render_view(structure: np.ndarray, rng: np.random.Generator, size: int, mask: np.ndarray | None = None,
                min_visible: float = 0.4, min_cover: float = 0.12, tries: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(photo, H) of `structure`, redrawn until min_visible of it is in frame and it covers min_cover of the view."""
    S = structure.shape[0]
    if mask is not None:
        ys, xs = np.nonzero(mask)
        pick = np.linspace(0, len(ys) - 1, min(400, len(ys))).astype(int)
        pts = np.stack([xs[pick], ys[pick]], 1).astype(np.float32)
    else:
        g = np.linspace(0, S - 1, 20, dtype=np.float32)
        pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    for _ in range(tries):
        H = random_homography(rng, size, S)
        proj = cv2.perspectiveTransform(pts[None], H)[0]
        inside = proj[((proj >= 0) & (proj < size)).all(1)]
        if len(inside) >= min_visible * len(pts) and len(inside) >= 3 and \
                cv2.contourArea(cv2.convexHull(inside)) >= min_cover * size * size:
            break
    return warp_view(structure, H, size, rng, True, mask), H
