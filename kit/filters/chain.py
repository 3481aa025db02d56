"""Filters chained by name (`delf+distractor`), built from the FILTERS registry; saved and loaded as JSON."""
from __future__ import annotations

import inspect
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from kit.errors import KitError
from kit.filters import FILTERS
from kit.filters.base import MODES, Filter, FilterResult
from kit.atomic import write_json
from kit.predictions import Predictions


class Chain:
    """Filters applied in order (`delf+distractor`); each is fitted on the output of the previous ones."""

    def __init__(self, filters: list[Filter]):
        self.filters = filters
        self.name = "+".join(f.name for f in filters)

    def apply(self, pred: Predictions) -> FilterResult:
        """Each filter applied to the output of the previous one; a row passes when it passes every filter
        and still has a prediction."""
        t0, stages = time.perf_counter(), []
        for f in self.filters:
            stages.append(f.apply(pred if not stages else stages[-1].predictions))
        return self._result(stages, t0)

    def fit(self, pred: Predictions, true: np.ndarray) -> FilterResult:
        """Fit each filter on the output of the previous ones (each signal computed once); the fit set's result."""
        t0, stages = time.perf_counter(), []
        for f in self.filters:
            current = pred if not stages else stages[-1].predictions
            signal, seconds = f.measure(current)
            stages.append(replace(f.fit(current, true, signal).apply(current, signal), seconds=seconds))
        return self._result(stages, t0)

    @staticmethod
    def _result(stages: list[FilterResult], t0: float) -> FilterResult:
        out = stages[-1].predictions
        passed = np.logical_and.reduce([r.passed for r in stages]) & (out.labels[:, 0] >= 0)
        return FilterResult(out, passed, {"total": time.perf_counter() - t0}, stages=stages)

    def to_dict(self) -> dict:
        return {"filter": self.name, "stages": [f.to_dict() for f in self.filters]}


def filter_names(spec: str) -> list[str]:
    """The registry names of a chain `spec` (names joined by '+'), else a KitError listing the valid ones."""
    names = [n.strip() for n in spec.split("+") if n.strip()]
    bad = [n for n in names if n not in FILTERS]
    if not names or bad:
        raise KitError(f"filter: unknown filter '{bad[0] if bad else spec}' (valid: {', '.join(FILTERS)}, joined by +)")
    return names


def build_filter(spec: str, mode: str = "demote", settings: dict | None = None) -> Chain:
    """`spec` = registry names joined by '+'; `settings` go to every filter (each takes what it knows)."""
    return Chain([FILTERS[n](mode=mode, **_accepted(n, settings or {})) for n in filter_names(spec)])


def _init_params(name: str) -> dict:
    """The constructor parameters of a filter and of its bases: the settings it takes, with their defaults."""
    out = {}
    for c in reversed(FILTERS[name].__mro__):
        if "__init__" in vars(c):
            out.update(inspect.signature(c.__init__).parameters)
    return out


def _accepted(name: str, settings: dict) -> dict:
    """The settings one filter takes (distractor ignores train_pred, ...), so one CLI dict serves a chain."""
    keys = _init_params(name)
    return {k: v for k, v in settings.items() if k in keys and k != "mode"}


def save_filter(chain: Chain, path: str | Path) -> Path:
    return write_json(chain.to_dict(), path)


def load_filter(path: str | Path, overrides: dict | None = None) -> Chain:
    """A fitted chain from its JSON; `overrides` replace settings (e.g. paths on another machine)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # missing, unreadable, not UTF-8, not JSON
        raise KitError(f"{path}: not a kit filter file ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    stages = check_filter_dict(path, d)
    filters = []
    for st in stages:
        saved, given = st.get("settings") or {}, _accepted(st["name"], overrides or {})
        settings = {**saved, **given}
        if "extractor_kw" in saved:  # merge: a given --image-size keeps the saved scales
            settings["extractor_kw"] = {**saved["extractor_kw"], **given.get("extractor_kw", {})}
        settings.pop("extractor", None)
        filters.append(FILTERS[st["name"]](mode=st.get("mode", "demote"), params=st.get("params"), **settings))
    return Chain(filters)


def check_filter_dict(path, d) -> list[dict]:
    """The stages of a filter JSON, each checked for types; KitError naming the file, stage and value."""
    if not isinstance(d, dict) or not isinstance(d.get("stages"), list) or not d["stages"]:
        got = type(d.get("stages")).__name__ if isinstance(d, dict) else type(d).__name__
        raise KitError(f"{path}: not a kit filter file ('stages' must be a non-empty list, got {got})")
    for i, st in enumerate(d["stages"]):
        where = f"{path}: stages[{i}]"
        if not isinstance(st, dict):
            raise KitError(f"{where}: must be an object with name/mode/params/settings (got {st!r:.60})")
        if st.get("name") not in FILTERS:
            raise KitError(f"{where}: unknown filter {st.get('name')!r:.60} (valid: {', '.join(FILTERS)})")
        if st.get("mode", "demote") not in MODES:
            raise KitError(f"{where}: mode {st.get('mode')!r:.60} (valid: {', '.join(MODES)})")
        for key in ("params", "settings"):
            if st.get(key) is not None and not isinstance(st[key], dict):
                raise KitError(f"{where}: '{key}' must be an object (got {st[key]!r:.60})")
        for k, v in (st.get("params") or {}).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise KitError(f"{where}: param {k}={v!r:.60} is not a finite number")
        defaults = {k: p.default for k, p in _init_params(st["name"]).items() if p.default is not p.empty}
        for k, v in (st.get("settings") or {}).items():
            want = defaults.get(k)
            if isinstance(want, (int, float)) and not isinstance(want, bool) and (
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v)):
                raise KitError(f"{where}: setting {k}={v!r:.60} is not a number")
            if isinstance(want, str) and v is not None and not isinstance(v, str):
                raise KitError(f"{where}: setting {k}={v!r:.60} is not a string")
        kw = (st.get("settings") or {}).get("extractor_kw")
        if kw is not None and not isinstance(kw, dict):
            raise KitError(f"{where}: settings.extractor_kw must be an object (got {kw!r:.60})")
    return d["stages"]
