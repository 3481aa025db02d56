"""Backgrounds, occluders and non-landmark scenes, in the structures' palette and textures (colour tells nothing)."""
from __future__ import annotations

import cv2
import numpy as np

from kit.synth.paint import AA, low_freq_noise, pick_colour, shade, texture

SKIES = np.array([(120, 170, 225), (200, 215, 230), (235, 190, 140), (160, 160, 170), (90, 110, 160), (225, 225, 220)],
                 np.float32)
GROUNDS = np.array([(110, 110, 112), (90, 130, 70), (150, 125, 95), (200, 185, 150), (70, 70, 75)], np.float32)
SKIN = np.array([(230, 190, 160), (200, 150, 115), (150, 100, 70), (100, 70, 50), (240, 210, 185)], np.float32)


def gradient(size: int, top, bottom) -> np.ndarray:
    """A vertical colour gradient from `top` to `bottom` (uint8 RGB)."""
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    img = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return np.repeat(img, size, axis=1).astype(np.uint8)


def person(img, rng, x: int, foot: int, h: int) -> None:
    clothes, skin = pick_colour(rng, 40), pick_colour(rng, 15.0, SKIN)
    w = max(2, h // 4)
    cv2.line(img, (x - w // 3, foot - h // 2), (x - w // 2, foot), shade(clothes, 0.5), max(1, w // 3), AA)
    cv2.line(img, (x + w // 3, foot - h // 2), (x + w // 2, foot), shade(clothes, 0.5), max(1, w // 3), AA)
    cv2.ellipse(img, (x, foot - int(h * 0.62)), (w // 2 + 1, int(h * 0.22)), 0, 0, 360, clothes, -1, AA)
    cv2.circle(img, (x, foot - int(h * 0.9)), max(1, h // 10), skin, -1, AA)


def car(img, rng, x: int, y: int, w: int) -> None:
    colour, h = pick_colour(rng, 40), max(3, w // 3)
    cv2.rectangle(img, (x, y - h), (x + w, y - h // 4), colour, -1)
    roof = np.array([(x + w // 5, y - h), (x + w // 3, y - h - h // 2),
                     (x + 3 * w // 4, y - h - h // 2), (x + 4 * w // 5, y - h)], np.int32)
    cv2.fillPoly(img, [roof], colour, AA)
    cv2.rectangle(img, (x + w // 3 + 1, y - h - h // 2 + 2), (x + 3 * w // 4 - 2, y - h), (60, 70, 80), -1)
    for wx in (x + w // 5, x + 4 * w // 5):
        cv2.circle(img, (wx, y - h // 4), max(2, h // 3), (25, 25, 25), -1, AA)


def tree(img, rng, x: int, foot: int, h: int) -> None:
    cv2.line(img, (x, foot), (x, foot - h // 2), (90, 65, 45), max(1, h // 12), AA)
    green = (int(rng.integers(40, 90)), int(rng.integers(90, 150)), int(rng.integers(30, 70)))
    for _ in range(int(rng.integers(3, 8))):
        c = (x + int(rng.normal(0, h / 6)), foot - h // 2 - int(abs(rng.normal(h / 5, h / 8))))
        cv2.circle(img, c, max(2, int(h * rng.uniform(0.12, 0.25))), shade(green, rng.uniform(0.7, 1.2)), -1, AA)


def pole(img, rng, x: int, foot: int, h: int) -> None:
    cv2.line(img, (x, foot), (x, foot - h), (50, 50, 55), max(1, h // 40), AA)
    if rng.random() < 0.5:
        cv2.rectangle(img, (x - h // 8, foot - h), (x + h // 8, foot - h + h // 6), pick_colour(rng, 40), -1)
        cv2.line(img, (x - h // 12, foot - h + h // 12), (x + h // 12, foot - h + h // 12), (250, 250, 250), 1)
    else:
        cv2.circle(img, (x, foot - h), max(2, h // 16), (240, 230, 170), -1, AA)


OCCLUDERS = (person, car, tree, pole)


def street_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Outdoor clutter: sky, ground, distant buildings, trees and wires."""
    sky = pick_colour(rng, 15.0, SKIES)
    img = gradient(size, shade(sky, rng.uniform(0.8, 1.0)), shade(sky, rng.uniform(1.0, 1.2)))
    for _ in range(int(rng.integers(0, 4))):  # clouds
        c = (int(rng.integers(size)), int(rng.integers(size // 2)))
        cv2.ellipse(img, c, (int(rng.integers(size // 12, size // 4)), int(rng.integers(size // 30, size // 10))),
                    0, 0, 360, shade(sky, 1.3), -1, AA)
    horizon = int(size * rng.uniform(0.55, 0.9))
    for _ in range(int(rng.integers(2, 9))):  # distant buildings with window dots
        w, h = int(rng.integers(size // 12, size // 4)), int(rng.integers(size // 12, size // 2))
        x = int(rng.integers(-w // 2, size))
        colour = shade(pick_colour(rng), rng.uniform(0.55, 0.9))
        cv2.rectangle(img, (x, horizon - h), (x + w, horizon), colour, -1)
        step = max(3, size // 40)
        for yy in range(horizon - h + step, horizon - step, 2 * step):
            for xx in range(x + step // 2, x + w - step // 2, 2 * step):
                cv2.rectangle(img, (xx, yy), (xx + step // 2, yy + step // 2), shade(colour, 0.6), -1)
    ground = pick_colour(rng, 15.0, GROUNDS)
    ground_tex = np.array(ground, np.float32) * (1 + 0.1 * low_freq_noise(rng, size)[horizon:, :, None])
    img[horizon:] = np.clip(ground_tex, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 5))):
        foot = horizon + int(rng.integers(0, size // 20 + 1))
        tree(img, rng, int(rng.integers(size)), foot, int(rng.integers(size // 8, size // 3)))
    if rng.random() < 0.4:  # wires
        y0, y1 = int(rng.integers(size // 3)), int(rng.integers(size // 3))
        cv2.line(img, (0, y0), (size, y1), (40, 40, 40), 1, AA)
    return img


def add_occluders(img: np.ndarray, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Draw 0-4 foreground people, cars, trees or poles in place (partial occlusion of the landmark)."""
    size = img.shape[0]
    for _ in range(int(rng.integers(0, 5)) if n is None else n):
        kind = OCCLUDERS[int(rng.integers(len(OCCLUDERS)))]
        x, foot = int(rng.integers(size)), int(size * rng.uniform(0.85, 1.05))
        if kind is car:
            car(img, rng, x - size // 6, foot, int(size * rng.uniform(0.2, 0.45)))
        else:
            kind(img, rng, x, foot, int(size * rng.uniform(0.2, 0.6)))
    return img


def scene_texture(rng, size: int) -> np.ndarray:
    """One or two procedural surfaces (the same textures landmarks are made of), e.g. a wall close-up."""
    img = texture(rng, size, pick_colour(rng))
    if rng.random() < 0.6:
        other = texture(rng, size, pick_colour(rng))
        m = np.zeros((size, size), np.uint8)
        pts = rng.integers(0, size, (int(rng.integers(3, 7)), 2)).astype(np.int32)
        cv2.fillPoly(m, [cv2.convexHull(pts)], 255)
        img[m > 0] = other[m > 0]
    return img


def scene_objects(rng, size: int) -> np.ndarray:
    """Table-top still life: cups, bottles, balls, books and boxes on a textured table."""
    table = int(size * rng.uniform(0.4, 0.65))
    img = texture(rng, size, pick_colour(rng), "plaster")
    img[table:] = texture(rng, size, pick_colour(rng))[table:]
    for _ in range(int(rng.integers(3, 9))):
        colour, x = pick_colour(rng, 40), int(rng.integers(size))
        y, s = int(rng.integers(table, size)), int(rng.integers(size // 14, size // 5))
        kind = rng.integers(5)
        if kind == 0:  # cup
            cv2.rectangle(img, (x - s // 2, y - s), (x + s // 2, y), colour, -1)
            cv2.ellipse(img, (x, y - s), (s // 2, max(1, s // 6)), 0, 0, 360, shade(colour, 0.6), -1, AA)
            cv2.ellipse(img, (x + s // 2, y - s // 2), (s // 4 + 1, s // 4 + 1), 0, -90, 90, colour, 2, AA)
        elif kind == 1:  # bottle
            cv2.rectangle(img, (x - s // 4, y - 2 * s), (x + s // 4, y), colour, -1)
            cv2.rectangle(img, (x - s // 10, y - 3 * s), (x + s // 10, y - 2 * s), colour, -1)
            cv2.rectangle(img, (x - s // 4, y - 3 * s // 2), (x + s // 4, y - s), pick_colour(rng), -1)
        elif kind == 2:  # ball with a highlight
            cv2.circle(img, (x, y - s // 2), s // 2, colour, -1, AA)
            cv2.circle(img, (x - s // 6, y - 2 * s // 3), max(1, s // 8), shade(colour, 1.6), -1, AA)
        elif kind == 3:  # stack of books
            for k in range(int(rng.integers(2, 6))):
                cv2.rectangle(img, (x - s, y - (k + 1) * s // 4), (x + s, y - k * s // 4), pick_colour(rng, 40), -1)
                cv2.rectangle(img, (x - s, y - (k + 1) * s // 4), (x + s, y - k * s // 4), (30, 30, 30), 1)
        else:  # box in perspective
            d = s // 3
            cv2.rectangle(img, (x - s // 2, y - s), (x + s // 2, y), colour, -1)
            top = np.array([(x - s // 2, y - s), (x - s // 2 + d, y - s - d), (x + s // 2 + d, y - s - d), (x + s // 2, y - s)], np.int32)
            side = np.array([(x + s // 2, y - s), (x + s // 2 + d, y - s - d), (x + s // 2 + d, y - d), (x + s // 2, y)], np.int32)
            cv2.fillPoly(img, [top], shade(colour, 1.3), AA)
            cv2.fillPoly(img, [side], shade(colour, 0.7), AA)
    return img


def scene_face(rng, size: int) -> np.ndarray:
    """Portrait-like picture: one to three face-like blobs with eyes, brows, mouth, hair and shoulders."""
    img = street_background(rng, size) if rng.random() < 0.4 else texture(rng, size, pick_colour(rng), "plaster")
    for _ in range(int(rng.integers(1, 4))):
        r = int(size * rng.uniform(0.12, 0.3))
        cx, cy = int(rng.integers(r, size - r + 1)), int(rng.integers(r, size - r // 2 + 1))
        skin = pick_colour(rng, 15.0, SKIN)
        cv2.ellipse(img, (cx, cy + 2 * r), (int(r * 1.6), r), 0, 180, 360, pick_colour(rng, 40), -1, AA)
        cv2.ellipse(img, (cx, cy - r // 3), (int(r * 0.85), int(r * 0.8)), 0, 180, 360, shade(pick_colour(rng), 0.5), -1, AA)
        cv2.ellipse(img, (cx, cy), (int(r * 0.75), r), 0, 0, 360, skin, -1, AA)
        for side in (-1, 1):
            e = (cx + side * r // 3, cy - r // 6)
            cv2.ellipse(img, e, (max(1, r // 6), max(1, r // 10)), 0, 0, 360, (245, 245, 245), -1, AA)
            cv2.circle(img, e, max(1, r // 14), (40, 30, 30), -1, AA)
            cv2.line(img, (e[0] - r // 6, e[1] - r // 5), (e[0] + r // 6, e[1] - r // 4), (60, 40, 30), max(1, r // 20), AA)
        cv2.line(img, (cx, cy - r // 10), (cx - r // 12, cy + r // 4), shade(skin, 0.7), 1, AA)
        cv2.ellipse(img, (cx, cy + r // 2), (r // 4 + 1, max(1, r // 10)), 0, 0, 180, (150, 60, 60), max(1, r // 15), AA)
    return img


def scene_indoor(rng, size: int) -> np.ndarray:
    """A room in one-point perspective with shelves of books, framed pictures, a window and furniture."""
    wall, floor = pick_colour(rng), pick_colour(rng)
    img = texture(rng, size, wall, "plaster")
    vx, vy = int(size * rng.uniform(0.3, 0.7)), int(size * rng.uniform(0.35, 0.6))
    bw = int(size * rng.uniform(0.3, 0.55))
    back = (vx - bw // 2, vy - bw // 2, vx + bw // 2, vy + bw // 3)
    cv2.fillPoly(img, [np.array([(0, size), (size, size), (back[2], back[3]), (back[0], back[3])], np.int32)], floor, AA)
    cv2.fillPoly(img, [np.array([(0, 0), (size, 0), (back[2], back[1]), (back[0], back[1])], np.int32)], shade(wall, 1.15), AA)
    cv2.fillPoly(img, [np.array([(0, 0), (back[0], back[1]), (back[0], back[3]), (0, size)], np.int32)], shade(wall, 0.85), AA)
    cv2.rectangle(img, back[:2], back[2:], shade(wall, 0.95), -1)
    for k in range(1, 6):  # floor boards towards the vanishing point
        x = k * size // 6
        cv2.line(img, (x, size), (back[0] + (back[2] - back[0]) * k // 6, back[3]), shade(floor, 0.8), 1, AA)
    for _ in range(int(rng.integers(1, 4))):  # shelves of books: dense corners like a facade
        x, y = int(rng.integers(0, size * 3 // 4)), int(rng.integers(size // 8, size // 2))
        w, rows = int(rng.integers(size // 6, size // 3)), int(rng.integers(2, 5))
        rh = max(4, size // 12)
        cv2.rectangle(img, (x - 2, y - 2), (x + w + 2, y + rows * rh + 2), shade(pick_colour(rng), 0.6), -1)
        for r in range(rows):
            bx = x
            while bx < x + w - 2:
                bw2 = int(rng.integers(2, max(3, size // 40 + 3)))
                top = y + r * rh + int(rng.integers(0, rh // 3 + 1))
                cv2.rectangle(img, (bx, top), (bx + bw2, y + (r + 1) * rh - 1), pick_colour(rng, 40), -1)
                bx += bw2 + 1
    for _ in range(int(rng.integers(0, 4))):  # framed pictures and a window
        x, y, w = int(rng.integers(size)), int(rng.integers(size // 2)), int(rng.integers(size // 12, size // 5))
        cv2.rectangle(img, (x, y), (x + w, y + w * 3 // 4), pick_colour(rng), -1)
        cv2.rectangle(img, (x, y), (x + w, y + w * 3 // 4), shade(pick_colour(rng), 0.5), max(1, size // 60))
    for _ in range(int(rng.integers(1, 4))):  # table / sofa blocks
        x, y, w = int(rng.integers(size)), int(size * rng.uniform(0.6, 0.95)), int(rng.integers(size // 6, size // 2))
        colour = pick_colour(rng)
        cv2.rectangle(img, (x, y - w // 3), (x + w, y - w // 4), colour, -1)
        for lx in (x + 2, x + w - 2):
            cv2.line(img, (lx, y - w // 4), (lx, y), shade(colour, 0.6), max(1, size // 60))
    return img


def scene_street(rng, size: int) -> np.ndarray:
    """A street with no landmark: background clutter plus people, cars, trees and poles."""
    return add_occluders(street_background(rng, size), rng, int(rng.integers(1, 6)))


SCENES = {"texture": scene_texture, "objects": scene_objects, "face": scene_face,
          "indoor": scene_indoor, "street": scene_street}
