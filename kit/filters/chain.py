"""Filters chained by name (`delf+distractor`), built from the FILTERS registry; saved and loaded as JSON."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kit.errors import KitError
from kit.filters import FILTERS
from kit.filters.base import Filter
from kit.predictions import Predictions


class Chain:
    """Filters applied in order (`delf+distractor`); each is fitted on the output of the previous ones."""

    def __init__(self, filters: list[Filter]):
        self.filters = filters
        self.name = "+".join(f.name for f in filters)

    def rescore(self, pred: Predictions) -> Predictions:
        for f in self.filters:
            pred = f.rescore(pred)
        return pred

    def fit_rescore(self, pred: Predictions, true: np.ndarray) -> Predictions:
        """Fit and return the rescored fit set (each filter's signal computed once)."""
        for f in self.filters:
            signal = f.signal(pred)
            pred = f.fit(pred, true, signal).rescore(pred, signal)
        return pred

    def to_dict(self) -> dict:
        return {"filter": self.name, "stages": [f.to_dict() for f in self.filters]}


def build_filter(spec: str, mode: str = "demote", settings: dict | None = None) -> Chain:
    """`spec` = registry names joined by '+'; `settings` go to every filter (each takes what it knows)."""
    names = [n.strip() for n in spec.split("+") if n.strip()]
    bad = [n for n in names if n not in FILTERS]
    if not names or bad:
        raise KitError(f"filter: unknown filter '{bad[0] if bad else spec}' (valid: {', '.join(FILTERS)}, joined by +)")
    return Chain([FILTERS[n](mode=mode, **_accepted(n, settings or {})) for n in names])


def _accepted(name: str, settings: dict) -> dict:
    """The settings one filter takes (distractor ignores train_pred, ...), so one CLI dict serves a chain."""
    import inspect

    keys = {k for c in FILTERS[name].__mro__ if "__init__" in vars(c) for k in inspect.signature(c.__init__).parameters}
    return {k: v for k, v in settings.items() if k in keys and k != "mode"}


def save_filter(chain: Chain, path: str | Path) -> Path:
    from kit.io import write_json

    return write_json(chain.to_dict(), path)


def load_filter(path: str | Path, overrides: dict | None = None) -> Chain:
    """A fitted chain from its JSON; `overrides` replace settings (e.g. paths on another machine)."""
    import json

    path = Path(path)
    try:
        d = json.loads(path.read_text())
        stages = d["stages"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KitError(f"{path}: not a kit filter file ({type(e).__name__}: {e})") from None
    filters = []
    for st in stages:
        if st.get("name") not in FILTERS:
            raise KitError(f"{path}: unknown filter '{st.get('name')}' (valid: {', '.join(FILTERS)})")
        saved, given = st.get("settings", {}), _accepted(st["name"], overrides or {})
        settings = {**saved, **given}
        if "extractor_kw" in saved:  # merge: a given --image-size keeps the saved scales
            settings["extractor_kw"] = {**saved["extractor_kw"], **given.get("extractor_kw", {})}
        settings.pop("extractor", None)
        filters.append(FILTERS[st["name"]](mode=st.get("mode", "demote"), params=st.get("params"), **settings))
    return Chain(filters)
