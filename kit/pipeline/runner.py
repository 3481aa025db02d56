"""The one runner: a recipe's stages in order, each cached under WORK/<stage id>/ and skipped while its fingerprint
(stage, settings, run settings, data files, upstream fingerprints) matches WORK/<id>/stage.json (written last,
atomically); a killed training stage resumes from its last checkpoint. One `kit run` per work folder (a lock)."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from kit import __version__
from kit.atomic import write_json
from kit.ensemble.rules import load_any
from kit.errors import KitError
from kit.pipeline.recipe import Recipe, check_deep, load_recipe
from kit.pipeline.stage import Context
from kit.truth import load_truth, score_gap

DATA_FILES = ("train.csv", "train_clean.csv", "sample_submission.csv", "distractors.csv")
DONE, STARTED, LOCK = "stage.json", "started.json", ".kit-run.lock"
HASH_BYTES = 64 << 20   # CSVs up to this size are hashed; larger ones are known by size and modification time


def data_fingerprint(data: Path | None) -> list:
    """The data folder's identity: its CSVs' contents (not images), so a rebuilt but equal folder keeps every stage."""
    if data is None:
        return []
    out = []
    for name in DATA_FILES:
        p = Path(data) / name
        if p.is_file():
            st = p.stat()
            out.append([name, hashlib.sha1(p.read_bytes()).hexdigest()] if st.st_size <= HASH_BYTES
                       else [name, st.st_size, st.st_mtime_ns])
    return [str(Path(data).resolve()), out]


def encode(value, root: Path):
    """Outputs as JSON: paths relative to the stage folder (a shipped stage folder works anywhere)."""
    if isinstance(value, Path):
        return {"path": os.path.relpath(value, root)}
    if isinstance(value, dict):
        return {k: encode(v, root) for k, v in value.items()}
    return value


def decode(value, root: Path):
    if isinstance(value, dict) and set(value) == {"path"}:
        return Path(os.path.normpath(root / value["path"]))
    if isinstance(value, dict):
        return {k: decode(v, root) for k, v in value.items()}
    return value


def finished(folder: Path, fp: str | None) -> dict | None:
    """The saved outputs of a stage folder that finished with fingerprint `fp` (None: any), if its files exist."""
    try:
        done = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(done, dict) or (fp is not None and done.get("fingerprint") != fp):
        return None
    outputs = decode(done.get("outputs") or {}, folder)
    return outputs if all(p.exists() for p in paths_in(outputs)) else None


def paths_in(outputs) -> list[Path]:
    """Every path in a stage's outputs (nested dicts of paths and plain values)."""
    if isinstance(outputs, Path):
        return [outputs]
    return [p for v in outputs.values() for p in paths_in(v)] if isinstance(outputs, dict) else []


def inside(outputs, root: Path, where: Path):
    """`outputs` if every path in them (links followed) lies under `root`: a packaged stage names only its files."""
    base = Path(root).resolve()
    for p in paths_in(outputs):
        if not Path(p).resolve().is_relative_to(base):
            raise KitError(f"{where}: '{p}' is outside the models dataset")
    return outputs


@contextlib.contextmanager
def work_lock(work: Path):
    """Refuse a second `kit run` on the same work folder (both would write the same files)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(work / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            raise KitError(f"{work}: another kit run is using this work folder ({f.read().strip() or 'pid ?'}); "
                           "wait for it or give another --work-dir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_recipe(recipe, data=None, work="work", overrides=(), splits=None, shipped: Path | None = None,
               inference: bool = False, log=print) -> dict:
    """Run `recipe` (a Recipe, file, shipped name or dict) on the GLDv2-layout folder `data` in `work` -> {"outputs",
    "seconds", "submission", "gap", "val_gap"}; `inference=True` (the Kaggle notebook): "prepare" stages shipped."""
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides, deep=False)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    if data is None and not any(s.stage.name == "synth" for s in recipe.stages):
        raise KitError(f"{recipe.source}: give --data-dir DIR (a GLDv2-layout folder: train.csv, train/, test/, "
                       "sample_submission.csv)")
    if data is not None and not Path(data).is_dir():
        raise KitError(f"{data}: data folder not found")
    with work_lock(work):
        return _run(recipe, Path(data) if data is not None else None, work, splits, shipped, inference, log)


def fingerprints(recipe: Recipe, data, splits) -> dict:
    """stage id -> fingerprint. A synth stage's data is fixed by its settings; later stages read it."""
    fps, data_fp, run = {}, data_fingerprint(data), recipe.run
    for spec in recipe.stages:
        text = json.dumps({"kit": __version__, "stage": spec.stage.name, "settings": dataclasses.asdict(spec.settings),
                           "seed": run.seed, "device": run.device, "val_fold": run.val_fold,
                           "data": [] if spec.stage.name == "synth" else data_fp,
                           "upstream": [fps[r] for r in spec.refs()], "splits": list(splits) if splits else None},
                          sort_keys=True, default=str)
        fps[spec.id] = hashlib.sha256(text.encode()).hexdigest()[:20]
        if spec.stage.name == "synth":
            data_fp = [fps[spec.id]]
    return fps


def _run(recipe: Recipe, data, work: Path, splits, shipped, inference: bool, log) -> dict:
    outputs, seconds = {}, {}
    n = len(recipe.stages)
    fps = fingerprints(recipe, data, splits)
    if any(finished(work / s.id, fps[s.id]) is None for s in recipe.stages
           if not (inference and s.stage.kind == "prepare")):
        check_deep(recipe)   # a stage will run: every name and config checked first
    log(f"recipe {recipe.name}: {n} stages, work {work}" + (f", data {data}" if data else ""))
    for i, spec in enumerate(recipe.stages, 1):
        folder, fp = work / spec.id, fps[spec.id]
        ship = shipped / spec.id if shipped is not None and (shipped / spec.id).is_dir() else None
        head = f"[{i}/{n}] {spec.id}" + (f" ({spec.stage.name})" if spec.id != spec.stage.name else "")
        if inference and spec.stage.kind == "prepare":
            got = finished(ship, None) if ship is not None else None
            if got is None:
                raise KitError(f"stage '{spec.id}': its packaged outputs are missing from {shipped} "
                               "(package the recipe with `kit kaggle package --recipe`)")
            outputs[spec.id] = inside(got, shipped, ship / DONE)
            log(f"{head}: packaged")
            continue
        got = finished(folder, fp)
        if got is not None:
            outputs[spec.id], seconds[spec.id] = got, 0.0
            log(f"{head}: done before, skipped")
        else:
            outputs[spec.id], seconds[spec.id] = run_stage(spec, recipe, data, work, folder, fp, outputs, splits,
                                                           ship, log, head)
        if spec.stage.name == "synth":
            data = Path(outputs[spec.id]["data"])
    return finish(recipe, data, work, outputs, seconds, log)


def run_stage(spec, recipe, data, work, folder, fp, outputs, splits, ship, log, head):
    """Run one stage in its folder, cleared first if other settings left it (a killed run's is kept: it resumes)."""
    try:
        started = json.loads((folder / STARTED).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        started = None
    if folder.exists() and started != fp:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE).unlink(missing_ok=True)
    write_json({"fingerprint": fp}, folder / STARTED)
    log(f"{head} ...")
    ctx = Context(data=data, work=work, dir=folder, run=recipe.run, outputs=outputs, splits=splits,
                  shipped=ship, log=log)
    t0 = time.perf_counter()
    out = spec.stage.run(spec.settings, ctx) or {}
    sec = time.perf_counter() - t0
    write_json({"fingerprint": fp, "stage": spec.stage.name, "settings": dataclasses.asdict(spec.settings),
                "seconds": round(sec, 3), "outputs": encode(out, folder)}, folder / DONE)
    log(f"{head}: {sec:.1f} s")
    return out, sec


def finish(recipe: Recipe, data, work: Path, outputs: dict, seconds: dict, log) -> dict:
    """WORK/submission.csv from the last stage that wrote one; validation and test GAP when known."""
    result = {"outputs": outputs, "seconds": seconds, "recipe": recipe.name}
    last = next((o for o in reversed(list(outputs.values())) if isinstance(o, dict) and "submission" in o), None)
    if last is None:
        return result
    result["submission"] = sub = Path(last["submission"])
    log(f"wrote {sub}")
    val = last.get("val_gap")
    if val is not None:
        result["val_gap"] = val
        log(f"validation GAP {val:.6f}")
    solution = Path(data) / "test_solution.csv" if data is not None else None
    if solution is not None and solution.is_file():
        result["gap"] = score_gap(load_any(last["predictions"]), load_truth(solution))
        log(f"GAP {result['gap']:.6f}")
    return result
