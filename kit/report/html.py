"""HTML pieces of the report page: notes, tables, inlined PNG images, thumbnails and the templates (*.html.j2)."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import cv2
import jinja2
import pandas as pd

from kit.images import decode_image
from kit.layout import image_path

_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("kit.report", ""), autoescape=True)


def render(template: str, **values) -> str:
    """A template of this folder rendered; values are escaped unless marked `| safe` there."""
    return _TEMPLATES.get_template(template).render(**values)


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def table(df: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    """A DataFrame as an HTML table, floats formatted, NaN blank, text escaped."""
    return re.sub(r">\s+<", "><", df.to_html(index=False, float_format=floatfmt.format, na_rep="", border=0))


def png_tag(png: bytes, alt: str = "", cls: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def thumbnail(data_dir: Path | None, split: str, image_id: str, size: int = 96) -> str:
    """An inlined PNG thumbnail (longest side `size`) of a GLDv2 image, or a grey box if it is missing."""
    rgb = decode_image(image_path(data_dir, split, image_id)) if data_dir is not None else None
    if rgb is None:
        return f'<div class="missing" title="{html.escape(image_id)}">no image</div>'
    scale = size / max(rgb.shape[:2])
    rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                     interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode thumbnail")
    return png_tag(buf.tobytes(), alt=image_id, cls="thumb")
