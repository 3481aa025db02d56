"""What a recipe's inference needs in the notebook, from a finished `kit run`, under MODELS/stages/<stage id>/."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from kit.atomic import atomic_path, copy_file, write_json
from kit.errors import KitError
import kit.pipeline.stages  # noqa: F401  (registers the stages)
from kit.pipeline.recipe import Recipe, load_recipe, save_recipe
from kit.pipeline.runner import DONE, encode, finished

SHIPPED = {"folds": ("folds", "val_solution"), "train": ("checkpoint", "config")}   # outputs the notebook reads
FITTED = {"ensemble": ("weights.json",), "filter": ("filter.json",), "rerank": ("calibration.json",)}  # fit at home


def needed_stages(recipe: Recipe, work: Path) -> tuple[set, dict]:
    """The stages the last one depends on, with each `select` replaced by its choice -> (their ids, renames)."""
    renames = {}
    for spec in recipe.stages:
        if spec.stage.name == "select":
            choice = work / spec.id / "choice.json"
            if not choice.is_file():
                raise KitError(f"{choice}: not found (run the recipe first: kit run {recipe.source} --work-dir {work})")
            renames[spec.id] = json.loads(choice.read_text())["choice"]
    keep, stack = set(), [recipe.stages[-1].id]
    while stack:
        sid = stack.pop()
        sid = renames.get(sid, sid)
        if sid not in keep:
            keep.add(sid)
            stack += recipe.spec(sid).refs()
    return keep, renames


def packaged_recipe(recipe: Recipe, work: Path) -> dict:
    """The recipe as the notebook runs it: needed stages only, references to a select stage redirected."""
    keep, renames = needed_stages(recipe, work)
    data = recipe.to_dict()
    stages = []
    for item in data["stages"]:
        (name, settings), = item.items()
        sid = settings.get("id", name)
        if sid not in keep:
            continue
        for key, value in settings.items():
            if isinstance(value, list):
                settings[key] = [renames.get(v, v) if isinstance(v, str) else v for v in value]
            elif isinstance(value, str) and key != "id":
                settings[key] = renames.get(value, value)
        if name == "predict":   # the splits it wrote at home, so the notebook finds the shipped ones
            done = finished(work / sid, None)
            settings["splits"] = list(done["splits"]) if done else settings.get("splits", [])
        stages.append({name: settings})
    data["stages"] = stages
    load_recipe(data)   # the packaged recipe is valid before anything is copied
    return data


def _fp16_copy(src: Path, dest: Path) -> Path:
    """A prediction file with float16 embeddings (half the upload; what kit run used with index_dtype float16)."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if "embeddings" in arrays:
        arrays["embeddings"] = arrays["embeddings"].astype(np.float16)
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return dest


def ship_stage(spec, work: Path, out: Path) -> list[str]:
    """Copy what the notebook needs of one stage into OUT/<id>/ (+ its stage.json) -> the files copied."""
    folder = work / spec.id
    outputs = finished(folder, None)
    if outputs is None:
        raise KitError(f"{folder}: stage '{spec.id}' has not finished (run the recipe first)")
    dest, copied, name = out / spec.id, [], spec.stage.name
    files = {key: outputs[key] for key in SHIPPED.get(name, ())}
    if name == "predict" and spec.settings.index == "shipped":
        files = {"splits": {s: p for s, p in outputs["splits"].items() if s != "test"}}

    def ship(src) -> Path:
        src = Path(src)
        target = dest / src.resolve().relative_to(folder.resolve())
        (_fp16_copy if src.suffix == ".npz" and spec.settings.index_dtype == "float16" else copy_file)(src, target)
        copied.append(str(target.relative_to(out)))
        return target

    shipped = {key: {split: ship(p) for split, p in value.items()} if isinstance(value, dict) else ship(value)
               for key, value in files.items() if value}
    if name == "train":
        shipped["run"] = dest / Path(outputs["run"]).resolve().relative_to(folder.resolve())
    for fname in FITTED.get(name, ()):
        if (folder / fname).is_file():
            copied.append(str(copy_file(folder / fname, dest / fname).relative_to(out)))
    if copied or spec.stage.kind == "prepare":
        write_json({"stage": name, "settings": dataclasses.asdict(spec.settings), "outputs": encode(shipped, dest)},
                   dest / DONE)
    return copied


def bundle(recipe, work: Path, out: Path, overrides=()) -> dict:
    """Package `recipe` (finished in `work`) into OUT/stages/ + OUT/recipe.yaml -> {"recipe", "files"}."""
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides)
    data = packaged_recipe(recipe, Path(work))
    shutil.rmtree(out / "stages", ignore_errors=True)   # a re-package must not ship stages of an earlier one
    files = [f for spec in load_recipe(data).stages for f in ship_stage(spec, Path(work), out / "stages")]
    save_recipe(data, out / "recipe.yaml")
    return {"recipe": data, "files": files}
