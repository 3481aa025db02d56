"""Painting primitives (one palette, textures, masked painting, windows, arches) shared by structures and scenes."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

AA = cv2.LINE_AA
TEXTURES = ("bricks", "ashlar", "stripes", "tiles", "plaster")

# Shared by landmarks and non-landmark scenes so colour alone separates nothing.
PALETTE = np.array([
    (214, 199, 165), (200, 160, 110), (160, 72, 52), (234, 232, 222), (150, 150, 150), (72, 76, 88),
    (82, 122, 102), (200, 170, 64), (190, 102, 62), (150, 180, 210), (220, 162, 172), (102, 72, 52),
    (44, 44, 48), (62, 140, 150), (120, 100, 150), (176, 190, 120),
], dtype=np.float32)


def pick_colour(rng: np.random.Generator, jitter: float = 22.0, table: np.ndarray = PALETTE) -> tuple[int, int, int]:
    """A colour of `table` (the shared palette) with some jitter, as an (R, G, B) int tuple for cv2 drawing."""
    c = table[rng.integers(len(table))] + rng.normal(0.0, jitter, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def shade(colour, factor: float) -> tuple[int, int, int]:
    """Colour scaled by `factor` (darker < 1 < lighter), clipped to uint8."""
    return tuple(int(np.clip(v * factor, 0, 255)) for v in colour)


def low_freq_noise(rng: np.random.Generator, size: int, cells: int = 8) -> np.ndarray:
    """Smooth noise (float32, mean 0, std ~1) made by upsampling a small random grid."""
    grid = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def texture(rng: np.random.Generator, size: int, colour, kind: str | None = None) -> np.ndarray:
    """A size x size uint8 RGB surface texture (bricks, ashlar, stripes, tiles or plaster) of `colour`."""
    kind = kind or str(rng.choice(TEXTURES))
    img = np.empty((size, size, 3), np.uint8)
    img[:] = colour
    if kind in ("bricks", "ashlar"):
        h = int(rng.integers(max(3, size // 40), max(5, size // 14)))
        mortar = shade(colour, rng.uniform(0.5, 0.8))
        y, row = 0, 0
        while y < size:
            rh = h if kind == "bricks" else max(3, int(h * rng.uniform(0.7, 1.7)))
            x = -int(h * 1.25) * (row % 2) if kind == "bricks" else -int(rng.integers(0, 3 * h))
            while x < size:
                w = int(h * 2.5) if kind == "bricks" else max(3, int(h * rng.uniform(1.2, 4.0)))
                cv2.rectangle(img, (x, y), (x + w - 1, y + rh - 1), shade(colour, rng.uniform(0.78, 1.15)), -1)
                cv2.rectangle(img, (x, y), (x + w - 1, y + rh - 1), mortar, 1)
                x += w
            y, row = y + rh, row + 1
    elif kind == "stripes":
        vertical, pos = rng.random() < 0.5, 0
        while pos < size:
            w = int(rng.integers(2, max(3, size // 12)))
            band = (slice(None), slice(pos, pos + w)) if vertical else (slice(pos, pos + w), slice(None))
            img[band] = shade(colour, rng.uniform(0.7, 1.2))
            pos += w
    elif kind == "tiles":
        t = int(rng.integers(max(3, size // 24), max(5, size // 9)))
        other = shade(colour, rng.uniform(0.55, 0.8))
        for i in range(0, size, t):
            for j in range(0, size, t):
                if ((i // t) + (j // t)) % 2:
                    cv2.rectangle(img, (j, i), (j + t - 1, i + t - 1), other, -1)
        if rng.random() < 0.5:
            for k in range(-size, size, t):
                cv2.line(img, (k, 0), (k + size, size), shade(colour, 1.2), 1, AA)
    weather = 1.0 + 0.08 * low_freq_noise(rng, size) + 0.04 * cv2.resize(
        rng.normal(0, 1, (size // 4, size // 4)).astype(np.float32), (size, size))
    return np.clip(img * weather[..., None], 0, 255).astype(np.uint8)


def paint(img: np.ndarray, mask: np.ndarray, tex: np.ndarray | None, draw: Callable[[np.ndarray], object]) -> None:
    """Fill the shapes `draw` makes (255 on a blank mask) with `tex` and add them to the silhouette; tex None cuts
    them out of it (openings the background shows through)."""
    m = np.zeros(mask.shape, np.uint8)
    draw(m)
    sel = m > 0
    img[sel] = 0 if tex is None else tex[sel]
    mask[sel] = 0 if tex is None else 255


def arch_shape(m, x0: int, x1: int, y_top: int, y_bot: int, colour=255, thickness: int = -1) -> None:
    """A round-topped opening: rectangle from the spring line down plus a half ellipse on top."""
    r = max(1, (x1 - x0) // 2)
    spring = y_top + r
    cv2.ellipse(m, ((x0 + x1) // 2, spring), (r, r), 0, 180, 360, colour, thickness, AA)
    if thickness < 0:
        cv2.rectangle(m, (x0, spring), (x1, y_bot), colour, -1)
    else:
        cv2.line(m, (x0, spring), (x0, y_bot), colour, thickness, AA)
        cv2.line(m, (x1, spring), (x1, y_bot), colour, thickness, AA)


def window(img, x: int, y: int, w: int, h: int, style: str, glass, frame, t: int, mullion: bool) -> None:
    """One window: rect, arched or round, with a frame and optional cross mullion."""
    if style == "round":
        r = max(1, min(w, h) // 2)
        cv2.circle(img, (x + w // 2, y + h // 2), r, glass, -1, AA)
        cv2.circle(img, (x + w // 2, y + h // 2), r, frame, t, AA)
    elif style == "arched":
        arch_shape(img, x, x + w, y, y + h, glass)
        arch_shape(img, x, x + w, y, y + h, frame, t)
        cv2.line(img, (x, y + h), (x + w, y + h), frame, t, AA)
    else:
        cv2.rectangle(img, (x, y), (x + w, y + h), glass, -1)
        cv2.rectangle(img, (x, y), (x + w, y + h), frame, t)
    if mullion and style != "round":
        cv2.line(img, (x + w // 2, y + (w // 2 if style == "arched" else 0)), (x + w // 2, y + h), frame, 1)
        cv2.line(img, (x, y + h // 2 + (w // 4 if style == "arched" else 0)),
                 (x + w, y + h // 2 + (w // 4 if style == "arched" else 0)), frame, 1)


def window_grid(img, rng, x0: int, y0: int, x1: int, y1: int, rows: int, cols: int, pal: dict,
                 style: str | None = None, skip=()) -> None:
    """A regular grid of windows in the box (x0, y0)-(x1, y1): the repeated corners of a facade."""
    style = style or str(rng.choice(["rect", "arched", "round", "rect"]))
    cw, ch = (x1 - x0) / cols, (y1 - y0) / rows
    fw, fh = rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.72)
    t, mullion = int(rng.integers(1, 3)), rng.random() < 0.5
    for r in range(rows):
        for c in range(cols):
            if (r, c) in skip:
                continue
            w, h = max(2, int(cw * fw)), max(2, int(ch * fh))
            x, y = int(x0 + c * cw + (cw - w) / 2), int(y0 + r * ch + (ch - h) / 2)
            # curtains, shutters and lit rooms differ window to window: breaks the repetition
            glass = shade(pal["glass"], rng.uniform(0.5, 1.8)) if rng.random() < 0.4 else pal["glass"]
            window(img, x, y, w, h, style, glass, pal["detail"], t, mullion)


def decals(img, mask, rng, S, pal) -> None:
    """Small class-specific marks (emblems, plaques, stains) on the structure: distinctive keypoints."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return
    for _ in range(int(rng.integers(12, 28))):
        i = int(rng.integers(len(ys)))
        c, r = (int(xs[i]), int(ys[i])), int(rng.integers(max(2, S // 40), max(3, S // 11)))
        colour = pal["detail"] if rng.random() < 0.5 else pick_colour(rng)
        kind = rng.integers(5)
        if kind == 0:
            cv2.circle(img, c, r, colour, -1, AA)
            cv2.circle(img, c, max(1, r // 2), pal["dark"], -1, AA)
        elif kind == 1:
            cv2.rectangle(img, (c[0] - r, c[1] - r // 2), (c[0] + r, c[1] + r // 2), colour, -1)
        elif kind == 2:
            cv2.line(img, (c[0] - r, c[1]), (c[0] + r, c[1]), colour, 2, AA)
            cv2.line(img, (c[0], c[1] - r), (c[0], c[1] + r), colour, 2, AA)
        elif kind == 3:
            pts = np.array([(c[0], c[1] - r), (c[0] + r, c[1]), (c[0], c[1] + r), (c[0] - r, c[1])], np.int32)
            cv2.fillPoly(img, [pts], colour, AA)
        else:
            t0 = rng.uniform(0, np.pi)
            star = np.array([(c[0] + r * np.cos(t), c[1] + r * np.sin(t)) for t in t0 + np.linspace(0, 4 * np.pi, 6)], np.int32)
            cv2.polylines(img, [star], False, colour, 1, AA)
    img[mask == 0] = 0


def class_palette(rng: np.random.Generator) -> dict:
    """Base / accent / detail / glass / dark colours of one structure, all from the shared palette."""
    base, accent, detail = pick_colour(rng), pick_colour(rng), pick_colour(rng)
    glass = shade(pick_colour(rng, 30.0), rng.uniform(0.3, 0.6))
    return {"base": base, "accent": accent, "detail": detail, "glass": glass, "dark": shade(base, rng.uniform(0.2, 0.4))}
