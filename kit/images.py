"""Image files: the one decode path of kit."""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np

from kit.errors import KitError

MAX_PIXELS = 50_000_000  # default cap (data.max_pixels): a header claiming more is not decoded
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def image_header_size(data: bytes, path: str | os.PathLike = "") -> tuple[int, int]:
    """(width, height) from the image header alone (Pillow parses only the header), KitError if unreadable."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as e:  # Pillow's own cap; kit's cap decides
        m = _BOMB_PIXELS.search(str(e))
        return (int(m.group(1)), 1) if m else (1 << 40, 1)
    except Exception as e:  # UnidentifiedImageError, OSError, SyntaxError from broken headers
        raise KitError(f"{path}: not a readable image ({type(e).__name__})") from None


_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # the marker after a scan: not stuffing, restart or fill


def _jpeg_truncated(data: bytes) -> bool:
    """A JPEG that ends before its end-of-image marker was cut short (OpenCV would grey-fill it)."""
    if data[:2] != b"\xff\xd8":
        return False
    pos, n = 2, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return b"\xff\xd9" not in data[-4096:]  # not a marker where one must be: the old heuristic
        marker = data[pos + 1]
        if marker == 0xD9:
            return False
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # fill byte, TEM, restart: no length
            pos += 1 if marker == 0xFF else 2
            continue
        if pos + 4 > n:
            return True
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker
            m = _SCAN_END.search(data, pos)
            if m is None:
                return True
            pos = m.start()
    return True


def _reduced_flag(data: bytes, width: int, height: int, min_side: int) -> int:
    """cv2.imdecode flag: a large JPEG decoded at 1/2, 1/4 or 1/8 scale (~3x faster), keeping min_side."""
    import cv2

    if min_side > 0 and data[:2] == b"\xff\xd8":  # other formats would be decoded whole and resized
        for k, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if min(width, height) >= k * min_side:
                return flag
    return cv2.IMREAD_COLOR


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, min_side: int = 0) -> np.ndarray:
    """RGB uint8 HxWx3, or KitError("PATH: why"); header pixels checked first; min_side > 0: big JPEGs decoded reduced."""
    import cv2

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KitError(f"{path}: image file not found") from None
    except OSError as e:  # a directory, no permission, ...
        raise KitError(f"{path}: not a readable image ({type(e).__name__})") from None
    w, h = image_header_size(data, path)
    if w * h > max_pixels:
        size = f"{w}x{h} = " if h > 1 else ""
        raise KitError(f"{path}: header claims {size}{w * h} pixels, over the cap of {max_pixels} (data.max_pixels)")
    if _jpeg_truncated(data):
        raise KitError(f"{path}: truncated JPEG (no end-of-image marker)")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), _reduced_flag(data, w, h, min_side))
    except cv2.error as e:
        raise KitError(f"{path}: OpenCV cannot decode it ({str(e).strip().splitlines()[-1][:120]})") from None
    if img is None or img.size == 0:
        raise KitError(f"{path}: OpenCV cannot decode it")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, strict: bool = False,
                 min_side: int = 0) -> np.ndarray | None:
    """The one decode path of kit: RGB uint8 HxWx3, or None when unreadable (callers count it); strict: KitError."""
    try:
        return read_image(path, max_pixels, min_side)
    except (KitError, OSError) as e:
        if strict:
            raise KitError(str(e) if isinstance(e, KitError) else f"{path}: {e.strerror or e}") from None
        return None
