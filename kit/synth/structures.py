"""One planar drawing per landmark class (views.py warps it); kinds and palette are shared, so neither names a class."""
from __future__ import annotations

import cv2
import numpy as np

from kit.synth.paint import (AA, TEXTURES, arch_shape, class_palette, decals, paint, shade, texture, window,
                             window_grid)


def _facade(img, mask, rng, S, pal, tex, tex2):
    W, Hb = int(S * rng.uniform(0.6, 0.92)), int(S * rng.uniform(0.4, 0.66))
    x0, y1 = (S - W) // 2, int(S * rng.uniform(0.9, 0.97))
    y0 = y1 - Hb
    paint(img, mask, tex, lambda m: cv2.rectangle(m, (x0, y0), (x0 + W, y1), 255, -1))
    roof = rng.choice(["pediment", "stepped", "cornice", "towers"])
    if roof == "pediment":
        apex = (S // 2, y0 - int(S * rng.uniform(0.12, 0.26)))
        pts = np.array([(x0 - S // 40, y0), (x0 + W + S // 40, y0), apex], np.int32)
        paint(img, mask, tex2, lambda m: cv2.fillPoly(m, [pts], 255, AA))
        cv2.polylines(img, [pts], True, pal["detail"], 2, AA)
        cv2.circle(img, (S // 2, (y0 * 2 + apex[1]) // 3), max(2, (y0 - apex[1]) // 5), pal["glass"], -1, AA)
    elif roof == "stepped":
        w, y = W, y0
        for _ in range(int(rng.integers(2, 5))):
            w, h = int(w * rng.uniform(0.6, 0.85)), int(S * rng.uniform(0.04, 0.09))
            xa, ya = (S - w) // 2, y - h
            paint(img, mask, tex2, lambda m: cv2.rectangle(m, (xa, ya), (xa + w, y), 255, -1))
            cv2.rectangle(img, (xa, ya), (xa + w, y), pal["detail"], 1)
            y = ya
    elif roof == "cornice":
        h = int(S * rng.uniform(0.04, 0.08))
        paint(img, mask, tex2, lambda m: cv2.rectangle(m, (x0 - S // 30, y0 - h), (x0 + W + S // 30, y0), 255, -1))
        step = max(3, S // 40)
        for x in range(x0 - S // 30, x0 + W + S // 30, step):
            cv2.rectangle(img, (x, y0 - h // 2), (x + step // 2, y0), pal["dark"], -1)
    else:
        tw, th = int(W * rng.uniform(0.12, 0.2)), int(S * rng.uniform(0.12, 0.25))
        for xa in (x0, x0 + W - tw):
            paint(img, mask, tex2, lambda m: cv2.rectangle(m, (xa, y0 - th), (xa + tw, y0), 255, -1))
            cap = np.array([(xa - 2, y0 - th), (xa + tw + 2, y0 - th), (xa + tw // 2, y0 - th - tw)], np.int32)
            paint(img, mask, tex, lambda m: cv2.fillPoly(m, [cap], 255, AA))
            window(img, xa + tw // 4, y0 - th + th // 4, tw // 2, th // 2, "arched", pal["glass"], pal["detail"], 1, False)
    rows, cols = int(rng.integers(2, 6)), int(rng.integers(3, 9))
    for r in range(1, rows):
        y = y0 + r * Hb // rows
        cv2.line(img, (x0, y), (x0 + W, y), pal["detail"], int(rng.integers(1, 4)))
    if rng.random() < 0.5:
        for c in range(cols + 1):
            x = x0 + c * W // cols
            cv2.rectangle(img, (x - S // 100 - 1, y0), (x + S // 100 + 1, y1), shade(pal["detail"], 1.1), -1)
    window_grid(img, rng, x0, y0, x0 + W, y1, rows, cols, pal, skip={(rows - 1, cols // 2)})
    dw, dh = max(3, W // cols // 2), int(Hb / rows * 0.85)
    arch_shape(img, S // 2 - dw, S // 2 + dw, y1 - dh, y1, pal["dark"])


def _tower(img, mask, rng, S, pal, tex, tex2):
    wb = int(S * rng.uniform(0.25, 0.4))
    wt = int(wb * rng.uniform(0.6, 1.0))
    y1, h = int(S * 0.97), int(S * rng.uniform(0.55, 0.75))
    y0 = y1 - h
    body = np.array([(S // 2 - wb // 2, y1), (S // 2 + wb // 2, y1), (S // 2 + wt // 2, y0), (S // 2 - wt // 2, y0)], np.int32)
    paint(img, mask, tex, lambda m: cv2.fillPoly(m, [body], 255, AA))
    bands = int(rng.integers(2, 6))
    for k in range(1, bands + 1):
        y = y0 + k * h // (bands + 1)
        half = int((wt + (wb - wt) * (y - y0) / h) / 2)
        cv2.rectangle(img, (S // 2 - half, y - 2), (S // 2 + half, y + 2), pal["detail"], -1)
        for j in (-1, 1):
            xw = S // 2 + j * half // 2
            window(img, xw - S // 60 - 1, y + S // 40, S // 30 + 2, S // 16, "arched", pal["glass"], pal["detail"], 1, False)
    top = rng.choice(["spire", "battlements", "cupola"])
    if top == "spire":
        pts = np.array([(S // 2 - wt // 2 - 3, y0), (S // 2 + wt // 2 + 3, y0), (S // 2, y0 - int(S * rng.uniform(0.12, 0.22)))], np.int32)
        paint(img, mask, tex2, lambda m: cv2.fillPoly(m, [pts], 255, AA))
        cv2.polylines(img, [pts], True, pal["dark"], 1, AA)
    elif top == "battlements":
        mw = max(3, wt // 7)
        for x in range(S // 2 - wt // 2, S // 2 + wt // 2 - mw // 2, 2 * mw):
            paint(img, mask, tex, lambda m: cv2.rectangle(m, (x, y0 - mw), (x + mw, y0), 255, -1))
    else:
        paint(img, mask, tex2, lambda m: cv2.ellipse(m, (S // 2, y0), (wt // 2, wt // 2), 0, 180, 360, 255, -1, AA))
        paint(img, mask, tex2, lambda m: cv2.line(m, (S // 2, y0 - wt // 2), (S // 2, y0 - wt // 2 - S // 20), 255, 3))
    cy, r = y0 + h // 6, max(4, int(wt * rng.uniform(0.25, 0.4)))
    cv2.circle(img, (S // 2, cy), r, pal["glass"] if rng.random() < 0.5 else (235, 232, 220), -1, AA)
    cv2.circle(img, (S // 2, cy), r, pal["detail"], 2, AA)
    for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        cv2.line(img, (int(S // 2 + 0.75 * r * np.cos(a)), int(cy + 0.75 * r * np.sin(a))),
                 (int(S // 2 + r * np.cos(a)), int(cy + r * np.sin(a))), pal["dark"], 1, AA)
    for length, a in ((0.5, rng.uniform(0, 2 * np.pi)), (0.8, rng.uniform(0, 2 * np.pi))):
        cv2.line(img, (S // 2, cy), (int(S // 2 + length * r * np.cos(a)), int(cy + length * r * np.sin(a))), pal["dark"], 2, AA)
    door = max(3, wb // 6)
    arch_shape(img, S // 2 - door, S // 2 + door, y1 - 3 * door, y1, pal["dark"])


def _arch(img, mask, rng, S, pal, tex, tex2):
    W, Ha = int(S * rng.uniform(0.6, 0.9)), int(S * rng.uniform(0.55, 0.8))
    x0, y1 = (S - W) // 2, int(S * 0.96)
    y0 = y1 - Ha
    paint(img, mask, tex, lambda m: cv2.rectangle(m, (x0, y0), (x0 + W, y1), 255, -1))
    attic = int(Ha * rng.uniform(0.15, 0.25))
    paint(img, mask, tex2, lambda m: cv2.rectangle(m, (x0 - S // 40, y0), (x0 + W + S // 40, y0 + attic), 255, -1))
    for k in range(int(rng.integers(4, 12))):  # an "inscription": a row of letter-like marks
        x = x0 + W // 8 + k * (W * 3 // 4) // 12
        cv2.rectangle(img, (x, y0 + attic // 3), (x + max(2, W // 40), y0 + 2 * attic // 3), pal["dark"], -1)
    ow = int(W * rng.uniform(0.3, 0.5))
    oa, ob = S // 2 - ow // 2, S // 2 + ow // 2
    otop = y0 + attic + int(Ha * rng.uniform(0.05, 0.15))
    paint(img, mask, None, lambda m: arch_shape(m, oa, ob, otop, y1 + 1))
    r = ow // 2
    for a in np.linspace(np.pi, 2 * np.pi, int(rng.integers(7, 15))):  # voussoirs around the opening
        p = (int(S // 2 + r * np.cos(a)), int(otop + r + r * np.sin(a)))
        q = (int(S // 2 + (r + S // 20) * np.cos(a)), int(otop + r + (r + S // 20) * np.sin(a)))
        cv2.line(img, p, q, pal["detail"], 2, AA)
    arch_shape(img, oa - S // 20, ob + S // 20, otop - S // 20, y1, pal["detail"], 2)
    if rng.random() < 0.6:  # side openings
        sw = ow // 3
        for cx in (x0 + (oa - x0) // 2, ob + (x0 + W - ob) // 2):
            paint(img, mask, None, lambda m: arch_shape(m, cx - sw // 2, cx + sw // 2, y1 - int(Ha * 0.35), y1 + 1))
    for cx in (x0 + (oa - x0) // 2, ob + (x0 + W - ob) // 2):  # relief panels
        py = y0 + attic + S // 30
        cv2.rectangle(img, (cx - S // 20, py), (cx + S // 20, py + S // 10), pal["detail"], 2)
        cv2.circle(img, (cx, py + S // 20), S // 50 + 1, pal["dark"], -1, AA)


def _statue(img, mask, rng, S, pal, tex, tex2):
    pw, ph = int(S * rng.uniform(0.35, 0.55)), int(S * rng.uniform(0.15, 0.25))
    y1 = int(S * 0.97)
    py = y1 - ph
    paint(img, mask, tex, lambda m: cv2.rectangle(m, (S // 2 - pw // 2, py), (S // 2 + pw // 2, y1), 255, -1))
    paint(img, mask, tex, lambda m: cv2.rectangle(m, (S // 2 - pw // 2 - S // 25, y1 - ph // 5), (S // 2 + pw // 2 + S // 25, y1), 255, -1))
    for y in (py + 3, y1 - ph // 5):
        cv2.line(img, (S // 2 - pw // 2, y), (S // 2 + pw // 2, y), pal["detail"], 2)
    cv2.rectangle(img, (S // 2 - pw // 4, py + ph // 4), (S // 2 + pw // 4, py + ph // 2 + 2), pal["detail"], -1)
    for k in range(3):
        y = py + ph // 4 + 3 + k * max(2, ph // 14)
        cv2.line(img, (S // 2 - pw // 5, y), (S // 2 + int(pw / 5 * rng.uniform(0.2, 1)), y), pal["dark"], 1)
    hf = int(S * rng.uniform(0.5, 0.66))
    top = py - hf
    cx = S // 2 + int(rng.integers(-S // 30, S // 30 + 1))
    limb = max(3, S // 30)
    hip, neck = (cx, top + int(hf * 0.6)), (cx, top + int(hf * 0.2))
    shoulder = [(cx - int(hf * 0.1), top + int(hf * 0.23)), (cx + int(hf * 0.1), top + int(hf * 0.23))]

    def figure(m):
        if rng.random() < 0.5:  # cape or robe
            cv2.fillPoly(m, [np.array([shoulder[0], shoulder[1], (cx + int(hf * 0.22), py), (cx - int(hf * 0.22), py)], np.int32)], 255, AA)
        cv2.ellipse(m, (cx, (hip[1] + neck[1]) // 2), (int(hf * 0.11), int(hf * 0.22)), 0, 0, 360, 255, -1, AA)
        cv2.circle(m, (cx, top + int(hf * 0.1)), int(hf * 0.08), 255, -1, AA)
        for side in (-1, 1):
            foot = (cx + side * int(hf * rng.uniform(0.05, 0.2)), py)
            cv2.line(m, hip, foot, 255, limb + 2, AA)
            a1, a2 = rng.uniform(-2.6, 0.6), rng.uniform(-2.8, 0.8)
            s = shoulder[(side + 1) // 2]
            elbow = (int(s[0] + side * hf * 0.18 * np.cos(a1)), int(s[1] + hf * 0.18 * np.sin(a1)))
            hand = (int(elbow[0] + side * hf * 0.16 * np.cos(a2)), int(elbow[1] + hf * 0.16 * np.sin(a2)))
            cv2.line(m, s, elbow, 255, limb, AA)
            cv2.line(m, elbow, hand, 255, limb, AA)
            if side == 1 and rng.random() < 0.7:  # staff, sword or torch in one hand
                cv2.line(m, hand, (hand[0] + int(rng.integers(-S // 12, S // 12 + 1)), hand[1] - int(hf * 0.35)), 255, max(2, limb // 2), AA)
            elif side == -1 and rng.random() < 0.4:
                cv2.circle(m, hand, int(hf * 0.09), 255, -1, AA)

    paint(img, mask, tex2, figure)
    fig = mask.copy()
    fig[py:] = 0
    for _ in range(int(rng.integers(6, 14))):  # folds and highlights inside the figure
        ys, xs = np.nonzero(fig)
        if len(ys) == 0:
            break
        i = int(rng.integers(len(ys)))
        p = (int(xs[i]), int(ys[i]))
        q = (p[0] + int(rng.integers(-S // 25, S // 25 + 1)), p[1] + int(rng.integers(-S // 25, S // 25 + 1)))
        cv2.line(img, p, q, shade(pal["detail"], rng.uniform(0.5, 1.4)), 1, AA)
    img[(fig == 0) & (mask > 0) & (np.arange(S)[:, None] < py)] = 0
    mask[(np.arange(S)[:, None] < py) & (fig == 0)] = 0


def _bridge(img, mask, rng, S, pal, tex, tex2):
    yd, dh = int(S * rng.uniform(0.35, 0.55)), int(S * rng.uniform(0.06, 0.11))
    yw, xa, xb = int(S * rng.uniform(0.82, 0.95)), S // 50, S - S // 50
    paint(img, mask, tex, lambda m: cv2.rectangle(m, (xa, yd), (xb, yw), 255, -1))
    n = int(rng.integers(2, 6))
    span = (xb - xa) / n
    pier = int(span * rng.uniform(0.15, 0.3))
    for k in range(n):
        a, b = int(xa + k * span + pier / 2), int(xa + (k + 1) * span - pier / 2)
        paint(img, mask, None, lambda m: arch_shape(m, a, b, yd + dh, yw + 1))
        arch_shape(img, a - 2, b + 2, yd + dh - 2, yw, pal["detail"], 2)
    cv2.rectangle(img, (xa, yd), (xb, yd + dh // 3), pal["detail"], -1)
    rail = max(3, S // 30)
    paint(img, mask, tex2, lambda m: cv2.rectangle(m, (xa, yd - rail), (xb, yd - rail + 2), 255, -1))
    for x in range(xa, xb, max(3, S // 40)):
        paint(img, mask, tex2, lambda m: cv2.line(m, (x, yd - rail), (x, yd), 255, 2))
    if rng.random() < 0.6:  # towers with cables
        th = int(yd * rng.uniform(0.5, 0.85))
        for cx in (int(xa + span), int(xb - span)):
            paint(img, mask, tex2, lambda m: cv2.rectangle(m, (cx - pier // 2, yd - th), (cx + pier // 2, yd), 255, -1))
            cv2.rectangle(img, (cx - pier // 4, yd - th + th // 6), (cx + pier // 4, yd - th // 2), pal["glass"], -1)
            for k in range(1, int(rng.integers(3, 7))):
                for side in (-1, 1):
                    end = (cx + side * int(k * span / 5), yd)
                    paint(img, mask, tex2, lambda m: cv2.line(m, (cx, yd - th + 3), end, 255, 2, AA))
    else:
        for x in range(xa + S // 20, xb, S // 6):  # lamps
            paint(img, mask, tex2, lambda m: cv2.line(m, (x, yd - S // 10), (x, yd), 255, 2))
            cv2.circle(img, (x, yd - S // 10), S // 60 + 2, (240, 230, 170), -1, AA)
            mask[max(0, yd - S // 10 - 4):yd - S // 10 + 5, max(0, x - 4):x + 5] = 255


def _dome(img, mask, rng, S, pal, tex, tex2):
    wing_h = int(S * rng.uniform(0.15, 0.28))
    y1 = int(S * 0.96)
    paint(img, mask, tex, lambda m: cv2.rectangle(m, (S // 10, y1 - wing_h), (S - S // 10, y1), 255, -1))
    window_grid(img, rng, S // 10, y1 - wing_h, S - S // 10, y1, int(rng.integers(1, 3)), int(rng.integers(5, 11)), pal)
    dw, dh = int(S * rng.uniform(0.35, 0.55)), int(S * rng.uniform(0.12, 0.22))
    yd = y1 - wing_h - dh
    paint(img, mask, tex, lambda m: cv2.rectangle(m, (S // 2 - dw // 2, yd), (S // 2 + dw // 2, y1 - wing_h), 255, -1))
    window_grid(img, rng, S // 2 - dw // 2, yd, S // 2 + dw // 2, y1 - wing_h, 1, int(rng.integers(3, 8)), pal, "arched")
    rx, ry = int(dw / 2 * rng.uniform(0.95, 1.1)), int(dw / 2 * rng.uniform(0.55, 1.0))
    paint(img, mask, tex2, lambda m: cv2.ellipse(m, (S // 2, yd), (rx, ry), 0, 180, 360, 255, -1, AA))
    for a in np.linspace(np.pi, 2 * np.pi, int(rng.integers(5, 11)))[1:-1]:
        cv2.line(img, (S // 2, yd - ry), (int(S // 2 + rx * np.cos(a)), int(yd + ry * np.sin(a))), pal["detail"], 2, AA)
    lw = max(4, rx // 4)
    paint(img, mask, tex, lambda m: cv2.rectangle(m, (S // 2 - lw // 2, yd - ry - lw), (S // 2 + lw // 2, yd - ry + 2), 255, -1))
    paint(img, mask, tex2, lambda m: cv2.line(m, (S // 2, yd - ry - lw), (S // 2, yd - ry - lw - S // 15), 255, 2, AA))
    cv2.line(img, (S // 2 - S // 50, yd - ry - lw - S // 20), (S // 2 + S // 50, yd - ry - lw - S // 20), pal["detail"], 2)


def _pagoda(img, mask, rng, S, pal, tex, tex2):
    n = int(rng.integers(3, 7))
    w, y = int(S * rng.uniform(0.45, 0.65)), int(S * 0.97)
    th = int(S * rng.uniform(0.7, 0.82) / n)
    shrink, lift = rng.uniform(0.72, 0.88), rng.uniform(0.05, 0.2)
    for _ in range(n):
        bh, rh = int(th * 0.6), int(th * 0.4)
        xa = S // 2 - w // 2
        paint(img, mask, tex, lambda m: cv2.rectangle(m, (xa, y - bh), (xa + w, y), 255, -1))
        window_grid(img, rng, xa, y - bh, xa + w, y, 1, int(rng.integers(2, 6)), pal, "rect")
        ov = int(w * rng.uniform(0.12, 0.25))
        roof = np.array([(xa - ov, y - bh - int(rh * lift)), (xa, y - bh), (xa + w, y - bh),
                         (xa + w + ov, y - bh - int(rh * lift)), (xa + w - ov // 2, y - bh - rh), (xa + ov // 2, y - bh - rh)], np.int32)
        paint(img, mask, tex2, lambda m: cv2.fillPoly(m, [roof], 255, AA))
        cv2.polylines(img, [roof], True, pal["dark"], 1, AA)
        y, w = y - bh - rh, int(w * shrink)
    paint(img, mask, tex2, lambda m: cv2.line(m, (S // 2, y), (S // 2, max(2, y - S // 8)), 255, 3))
    for k in range(3):
        cv2.circle(img, (S // 2, y - k * S // 30 - S // 40), S // 70 + 2, pal["detail"], -1, AA)


DRAW = {"facade": _facade, "tower": _tower, "arch": _arch, "statue": _statue,
        "bridge": _bridge, "dome": _dome, "pagoda": _pagoda}
KINDS = tuple(DRAW)


def make_structure(class_id: int, seed: int, size: int, return_mask: bool = False, family: int | None = None):
    """Size x size RGB drawing of class `class_id` (black off it) [+ silhouette]; one `family` shares kind and palette."""
    key = class_id if family is None else family
    fam, rng = np.random.default_rng([seed, 13, key]), np.random.default_rng([seed, 1, class_id])
    S = int(size)
    pal = class_palette(fam)
    tex = texture(rng, S, pal["base"], str(fam.choice(TEXTURES)))
    tex2 = texture(rng, S, pal["accent"], str(fam.choice(TEXTURES)))
    img, mask = np.zeros((S, S, 3), np.uint8), np.zeros((S, S), np.uint8)
    kind = KINDS[int(np.random.default_rng([seed, 11, key]).integers(len(KINDS)))]   # shared by a family
    DRAW[kind](img, mask, rng, S, pal, tex, tex2)
    decals(img, mask, rng, S, pal)
    return (img, mask) if return_mask else img
