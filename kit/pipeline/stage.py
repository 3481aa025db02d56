"""A pipeline stage: (typed settings, context) -> outputs, registered by name; it writes only under `ctx.dir` and
returns what it wrote. "prepare" stages run at home and are shipped; "infer" stages also run in the Kaggle notebook."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kit.errors import KitError
from kit.registry import Registry

STAGES = Registry("stage")
SPLITS = ("train", "val", "test", "distractors")   # image sets a stage can produce predictions for


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable
    settings: type
    kind: str = "infer"   # "prepare" | "infer"
    help: str = ""
    check: Callable | None = None   # extra validation of the settings, run when the recipe is loaded


def stage(name: str, settings: type, kind: str = "infer", check: Callable | None = None):
    """Decorator registering a stage under `name`; `check(settings)` rejects bad combinations when a recipe loads."""
    def add(fn):
        STAGES.register(name, Stage(name, fn, settings, kind, (fn.__doc__ or "").strip().partition("\n")[0], check))
        return fn
    return add


def ref(default: str = "", many: bool = False, stages: tuple = ()):
    """A setting that names an earlier stage by id; `stages`: the stage names it may be (any if empty)."""
    meta = {"ref": stages or True}
    return field(default_factory=list, metadata=meta) if many else field(default=default, metadata=meta)


def choice(default, registry: Callable[[], typing.Iterable[str]]):
    """A setting whose value (each item of a list) must be a name of `registry()` (called lazily: registries import
    torch); a list default is copied per instance."""
    if isinstance(default, list):
        return field(default_factory=default.copy, metadata={"choices": registry})
    return field(default=default, metadata={"choices": registry})


@dataclass
class RunSettings:
    """Settings of the whole run (recipe top level, `key=value` on `kit run`)."""
    seed: int = 0
    device: str = "auto"
    workers: int = 2          # processes: DataLoader workers, synthetic images, centroid clustering
    threads: int = 2          # threads: local-feature matching of the filter stage
    cache_dir: str = ""       # local-feature cache; "" = WORK/cache
    val_fold: int = 0         # the fold that is validation (the index of a test query = every fold)


@dataclass
class Context:
    """Where a stage runs: the data folder, the work folder, its own folder and the earlier outputs."""
    data: Path
    work: Path
    dir: Path
    run: RunSettings
    outputs: dict = field(default_factory=dict)    # stage id -> its returned outputs
    splits: tuple | None = None                    # None: every split; ("test",): inference only
    shipped: Path | None = None                    # this stage's files packaged at home (Kaggle notebook)
    log: Callable = print

    def of(self, stage_id: str) -> dict:
        return self.outputs[stage_id]

    def split_files(self, stage_id: str) -> dict[str, Path]:
        """{split: prediction file} written by an earlier stage."""
        files = self.outputs[stage_id].get("splits")
        if not files:
            raise KitError(f"stage '{stage_id}' wrote no prediction files")
        return {k: Path(v) for k, v in files.items()}

    def wants(self, split: str) -> bool:
        return self.splits is None or split in self.splits

    def query_splits(self, files: dict) -> list[str]:
        """The splits of an earlier stage's `files` this run predicts: all it wants but train (the index)."""
        return [s for s in files if s != "train" and self.wants(s)]

    def shipped_file(self, name: str) -> Path | None:
        """A file of this stage packaged at home (fitted weights, a fitted filter, an index), if any."""
        if self.shipped is None or not (path := self.shipped / name).is_file():
            return None
        if not path.resolve().is_relative_to(self.shipped.resolve()):
            raise KitError(f"{path}: a link to a file outside the models dataset")
        return path

    @property
    def cache_dir(self) -> Path:
        return Path(self.run.cache_dir) if self.run.cache_dir else self.work / "cache"


def fields_of(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}
