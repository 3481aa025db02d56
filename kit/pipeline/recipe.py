"""Recipe files (`name`, run settings, `stages: [{STAGE: {settings}}, ...]`): load, apply `key=value` overrides and
validate every stage before any runs. A mistake is one KitError naming the file, stage, key and valid choices;
a renamed key keeps working for one release (RENAMED_KEYS) with one deprecation line."""
from __future__ import annotations

import copy
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kit.atomic import write_text
from kit.config import _coerce, named_file, read_yaml_mapping
from kit.errors import KitError
from kit.pipeline.stage import STAGES, RunSettings, Stage, fields_of
from kit.registry import deprecated

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"   # shipped recipes (top-level recipes/ links here)
MAX_BYTES = 1 << 20        # a recipe is a few KB; refuse to parse anything near this
ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")   # stage ids are folder names under WORK
RENAMED_KEYS = {"rerank": {"top_n": "candidates", "n_jobs": "threads"},
                "filter": {"neighbours": "candidates"}, "synth": {"distractors": "distractor_images"}}


@dataclass
class StageSpec:
    id: str
    stage: Stage
    settings: object

    def refs(self) -> list[str]:
        """The ids of the earlier stages this one reads."""
        values = [getattr(self.settings, f.name) for f in dataclasses.fields(self.settings) if f.metadata.get("ref")]
        return [r for v in values for r in (v if isinstance(v, list) else [v]) if r]


@dataclass
class Recipe:
    name: str
    source: str
    stages: list[StageSpec]
    run: RunSettings = field(default_factory=RunSettings)
    description: str = ""
    data: dict = field(default_factory=dict, repr=False)   # the validated source, for check_deep

    def spec(self, stage_id: str) -> StageSpec:
        return next(s for s in self.stages if s.id == stage_id)

    def to_dict(self) -> dict:
        """The recipe as data (what `save_recipe` writes): only settings that differ from the defaults."""
        stages = []
        for s in self.stages:
            given = {k: v for k, v in dataclasses.asdict(s.settings).items()
                     if v != dataclasses.asdict(s.stage.settings()).get(k)}
            stages.append({s.stage.name: ({"id": s.id} if s.id != s.stage.name else {}) | given})
        run = {k: v for k, v in dataclasses.asdict(self.run).items() if v != getattr(RunSettings(), k)}
        return {"name": self.name, **({"description": self.description} if self.description else {}), **run,
                "stages": stages}


def load_recipe(source, overrides: list[str] | tuple = (), deep: bool = True) -> Recipe:
    """A Recipe from a file, a shipped recipe's name or a dict, overrides applied, every stage validated; deep=False
    skips the checks that import torch (registry names, kit configs): the runner does them when a stage runs."""
    if isinstance(source, dict):
        data, where = copy.deepcopy(source), f"recipe '{source.get('name', '?')}'"
    else:
        path = named_file(str(source), RECIPE_DIR, "recipe")   # `retrieval` -> kit/recipes/retrieval.yaml
        data, where = read_yaml_mapping(path, "recipe keys with 'stages'", MAX_BYTES), str(path)
    apply_overrides(data, overrides, where)
    return validate(data, where, deep)


def check_deep(recipe: Recipe) -> None:
    """The checks load_recipe(deep=False) left out (registry names, kit configs), for every stage."""
    validate(recipe.data, recipe.source, True)


def apply_overrides(data: dict, overrides, where: str) -> None:
    """`key=value` sets a run setting, `STAGE_ID.key=value` a stage's (`STAGE_ID.set.a.b=v`: a config override)."""
    stages = data.get("stages") if isinstance(data.get("stages"), list) else []
    by_id = {}
    for item in stages:
        if isinstance(item, dict) and len(item) == 1:
            name, settings = next(iter(item.items()))
            if settings is None:
                item[name] = settings = {}
            if isinstance(settings, dict):
                by_id[str(settings.get("id", name))] = settings
    for text in overrides:
        key, sep, value = str(text).partition("=")
        if not sep:
            raise KitError(f"override '{text}': expected key=value (e.g. seed=1 or predict.set.data.image_size=256)")
        head, _, rest = key.strip().partition(".")
        if not rest:
            data[head] = yaml.safe_load(value) if value else value
            continue
        if head not in by_id:
            raise KitError(f"{where}: override '{text}': no stage '{head}' (stages: {', '.join(by_id) or 'none'})")
        node = by_id[head]
        name, _, sub = rest.partition(".")
        if name == "set" and sub:
            node.setdefault("set", {})[sub] = value
        else:
            node[name] = yaml.safe_load(value) if value else value


def validate(data: dict, where: str, deep: bool = True) -> Recipe:
    known = {"name", "description", "stages"} | set(fields_of(RunSettings))
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise KitError(f"{where}: unknown key '{unknown[0]}' (valid: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(RunSettings)
    run = RunSettings(**{k: coerce(data[k], hints[k], f"{where}: {k}") for k in fields_of(RunSettings) if k in data})
    if run.threads < 1 or run.workers < 0:
        raise KitError(f"{where}: threads must be >= 1 and workers >= 0 (threads={run.threads}, workers={run.workers})")
    items = data.get("stages")
    if not isinstance(items, list) or not items:
        raise KitError(f"{where}: 'stages' must be a non-empty list of {{STAGE: {{settings}}}} items "
                       f"(stages: {', '.join(STAGES.names())})")
    specs: list[StageSpec] = []
    for i, item in enumerate(items):
        specs.append(stage_spec(item, i, specs, where, deep))
    return Recipe(str(data.get("name") or Path(where).stem), where, specs, run, str(data.get("description") or ""),
                  data)


def stage_spec(item, i: int, earlier: list[StageSpec], where: str, deep: bool = True) -> StageSpec:
    if not isinstance(item, dict) or len(item) != 1:
        raise KitError(f"{where}: stages[{i}] must be one {{STAGE: {{settings}}}} mapping, got {str(item)[:80]!r}")
    name, values = next(iter(item.items()))
    STAGES.check(str(name), f"{where}: stages[{i}]: ")
    st = STAGES[str(name)]
    if not isinstance(values, (dict, type(None))):
        raise KitError(f"{where}: stage '{name}': settings must be a mapping, not a {type(values).__name__}")
    for old, new in RENAMED_KEYS.get(str(name), {}).items():   # in place: a second validation is silent
        if old in (values or {}):
            deprecated(f"{name} key '{old}'", f"'{new}'")
            values[new] = values.pop(old)
    values = dict(values or {})
    sid = str(values.pop("id", name))
    at = f"{where}: stage '{sid}' ({name})"
    if not ID.match(sid):
        raise KitError(f"{at}: id must be letters, digits, '_' or '-' (a folder name under the work folder)")
    if any(s.id == sid for s in earlier):
        raise KitError(f"{at}: a second stage with id '{sid}' (give one an 'id:')")
    fields, hints, settings = fields_of(st.settings), typing.get_type_hints(st.settings), st.settings()
    for key, value in values.items():
        if key not in fields:
            raise KitError(f"{at}: unknown key '{key}' (valid: id, {', '.join(fields)})")
        value = coerce(value, hints[key], f"{at}: {key}")
        meta = fields[key].metadata
        if "choices" in meta and deep:
            names = list(meta["choices"]())
            for v in value if isinstance(value, list) else [value]:
                if v not in names:
                    raise KitError(f"{at}: {key} '{v}' is unknown (valid: {', '.join(map(str, names))})")
        setattr(settings, key, value)
    for key, kinds in {k: f.metadata["ref"] for k, f in fields.items() if f.metadata.get("ref")}.items():
        value = getattr(settings, key)
        for r in filter(None, value if isinstance(value, list) else [value]):
            match = next((s for s in earlier if s.id == r), None)
            if match is None:
                later = "" if r != sid else " (a stage cannot use its own output)"
                raise KitError(f"{at}: {key} '{r}' is not an earlier stage{later} (earlier: "
                               f"{', '.join(s.id for s in earlier) or 'none'}; stages run in the order listed)")
            if kinds is not True and match.stage.name not in kinds:
                raise KitError(f"{at}: {key} '{r}' is a {match.stage.name} stage; it must be one of: "
                               f"{', '.join(kinds)}")
    if st.check is not None and deep:
        try:
            st.check(settings)
        except KitError as e:
            raise KitError(f"{at}: {e}") from None
    return StageSpec(sid, st, settings)


def coerce(value, tp, where: str):
    """A YAML value as the setting's declared type (int, float, str, bool, list[...], dict[str, str])."""
    origin = typing.get_origin(tp)
    if origin is dict:
        if not isinstance(value, dict):
            raise KitError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {str(k): str(v) for k, v in value.items()}
    if origin is list and not isinstance(value, (list, str)):
        value = [value]
    if isinstance(value, (dict, list)) and origin is not list:
        raise KitError(f"{where}: expected a {getattr(tp, '__name__', tp)}, got a {type(value).__name__}")
    try:
        return _coerce(value, tp, where)
    except KitError:
        raise KitError(f"{where}: {str(value)[:80]!r} is not a valid {getattr(tp, '__name__', tp)}") from None


def save_recipe(recipe: Recipe | dict, path: str | Path) -> Path:
    data = recipe.to_dict() if isinstance(recipe, Recipe) else recipe
    return write_text(yaml.safe_dump(data, sort_keys=False), path)
