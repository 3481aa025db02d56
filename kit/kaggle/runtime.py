"""What the offline inference notebook does: find its inputs and the packaged files (uploaded as folders
or as zips), choose quick or full, build the steps and run them through kit's own CLI parser."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

from kit.errors import KitError
from kit.kaggle import KAGGLE_INPUT, KAGGLE_WORKING, MANIFEST, PREDICT_DEFAULTS  # noqa: F401 (the notebook reads them here)

PACKAGED = ("runs", "params")  # the folders of a models dataset (uploaded as runs.zip, params.zip)


def find_input(env_var: str, marker: str, default: Path | None = None, env=None) -> Path:
    """A Kaggle input dir: $env_var, else `default`, else the first /kaggle/input/*/ holding `marker`."""
    env = os.environ if env is None else env
    if env.get(env_var):
        return Path(env[env_var])
    if default is not None and (default / marker).exists():
        return default
    for pattern in (f"*/{marker}", f"datasets/*/*/{marker}", f"competitions/*/{marker}"):
        hit = next(iter(sorted(KAGGLE_INPUT.glob(pattern))), None)
        if hit is not None:
            return hit.parent
    raise KitError(f"no input dir with {marker} under {KAGGLE_INPUT}; attach the dataset or set {env_var}")


def load_manifest(models: str | os.PathLike) -> dict:
    path = Path(models) / MANIFEST
    if not path.is_file():
        raise KitError(f"{path}: not found (build the models dataset with `kit kaggle package`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise KitError(f"{path}: not a kit manifest ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    if not isinstance(manifest, dict):
        raise KitError(f"{path}: not a kit manifest (top level is a {type(manifest).__name__}, not an object)")
    return manifest


def packaged_file(models: str | os.PathLike, folder: str, rel: str, work: str | os.PathLike) -> Path:
    """MODELS/<folder>/<rel> in whichever form the dataset arrived: the folder itself, Kaggle's unpacked
    zip (MODELS/<folder>/, MODELS/<folder>/<folder>/ or MODELS/ itself), or the zip as uploaded
    (`kaggle datasets create --dir-mode zip` sends <folder>.zip), extracted once into WORK/<folder>/."""
    models, work = Path(models), Path(work)
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise KitError(f"{models / MANIFEST}: {folder}/{rel} is outside the models dataset")
    for base in (models / folder, models / folder / folder, models, work / folder):
        if (base / rel).exists():
            if not (base / rel).resolve().is_relative_to(base.resolve()):  # a link out of the dataset
                raise KitError(f"{models / MANIFEST}: {folder}/{rel} is outside the models dataset")
            return base / rel
    archive = models / f"{folder}.zip"
    if archive.is_file():
        shutil.unpack_archive(archive, work / folder)
        if (work / folder / rel).exists():
            return work / folder / rel
    have = ", ".join(sorted(p.name for p in models.iterdir())) if models.is_dir() else "no such folder"
    raise KitError(f"{models}: no {folder}/{rel} (has: {have}); upload the models dataset with --dir-mode zip")


def choose_mode(n_test: int, public_test_count: int = 0, env=None) -> str:
    """'quick' or 'full'. GLR 2020/21 notebooks ran twice: once on the public copy of the test set when
    saved, then on the hidden set when submitted. Only the second run is scored, so the first can just
    write the sample submission. Full when Kaggle says it is the rerun (KAGGLE_IS_COMPETITION_RERUN) or
    the test set differs in size from the public copy; KIT_MODE=full|quick overrides."""
    env = os.environ if env is None else env
    forced = env.get("KIT_MODE", "auto")
    if forced in ("full", "quick"):
        return forced
    if env.get("KAGGLE_IS_COMPETITION_RERUN"):
        return "full"
    return "quick" if public_test_count and n_test == public_test_count else "full"


def quick_submission(sample: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The sample submission, validated and rewritten as `out` (the fast path of `choose_mode`)."""
    from kit.submission import read_sample_ids, read_submission, write_submission

    return write_submission(read_submission(sample, sample_ids=read_sample_ids(sample)), out)


def predict_settings(manifest: dict, **changes) -> dict:
    """Config overrides for every predict step: kit's Kaggle defaults < the manifest's < `changes`."""
    return {**PREDICT_DEFAULTS, **(manifest.get("predict") or {}), **changes}


def _fill(args: list[str], where: dict) -> list[str]:
    """Placeholders of packaged specs: {params}/NAME (a packaged file), {data}, {work}."""
    out = []
    for a in map(str, args):
        if Path(a).is_absolute() or ".." in Path(a).parts:
            raise KitError(f"{where['manifest']}: step argument {a!r} is outside the models dataset "
                           "(name a packaged file {params}/NAME)")
        if a.startswith("{params}/"):
            a = str(where["params"](a[len("{params}/"):]))
        out.append(a.replace("{data}", str(where["data"])).replace("{work}", str(where["work"])))
    return out


def inference_plan(manifest: dict, models: str | os.PathLike, data: str | os.PathLike, work: str | os.PathLike,
                   settings: dict | None = None, runs: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """The kit commands of the full run: predict each packaged run (or the `runs` subset, "exp/foldN") with
    `settings` (config overrides, default predict_settings) -> ensemble (soft, equal weights unless the
    manifest says) -> filters -> submission.csv with one row per sample id."""
    models, data, work = Path(models), Path(data), Path(work)
    settings = predict_settings(manifest) if settings is None else settings
    chosen = [r for r in manifest["runs"] if runs is None or f"{r['exp']}/fold{r['fold']}" in runs]
    if not chosen:
        raise KitError(f"no packaged run among {runs} (packaged: "
                       + ", ".join(f"{r['exp']}/fold{r['fold']}" for r in manifest["runs"]) + ")")
    where = {"params": lambda rel: packaged_file(models, "params", rel, work), "data": data, "work": work,
             "manifest": models / MANIFEST}
    steps, preds = [], []
    for r in chosen:
        run = packaged_file(models, "runs", f"{r['exp']}/fold{r['fold']}", work)
        preds.append(str(work / "predictions" / r["exp"] / f"test_fold{r['fold']}.npz"))
        steps.append((f"predict {r['exp']} fold{r['fold']}",
                      ["predict", "--config", str(run / "config.yaml"), "--fold", str(r["fold"]), "--split", "test",
                       "--checkpoint", str(run / "best.pt"), "--out", preds[-1], f"runs_dir={run.parent.parent}",
                       f"data.data_dir={data}", f"predictions_dir={work / 'predictions'}",
                       *(f"{k}={v}" for k, v in settings.items())]))
    current = preds[0]
    if len(preds) > 1:
        method, *rest = _fill(manifest.get("ensemble") or ["soft"], where)
        if len(chosen) < len(manifest["runs"]) and "--weights" in rest:  # weights were for all runs
            i = rest.index("--weights")
            rest = rest[:i] + [a for a in rest[i + 1:] if a.startswith("--")]
        current = str(work / "ensembles" / f"{method}.npz")
        steps.append((f"ensemble {method}", ["ensemble", method, *preds, *rest, "--out", str(work / "ensemble.csv"),
                                             "--ensembles-dir", str(work / "ensembles")]))
    for i, spec in enumerate(manifest.get("filters") or []):
        name, *rest = _fill(spec, where)
        nxt = str(work / f"filtered{i}_{name}.npz")
        steps.append((f"filter {name}", ["filter", name, current, *rest, "--out", nxt]))
        current = nxt
    steps.append(("submission", ["to-submission", current, "--sample", str(data / "sample_submission.csv"),
                                 "--out", str(work / "submission.csv")]))
    return steps


def parse_step(argv: list[str]):
    """argv parsed by kit's own CLI parser (the one `run_plan` runs it with) -> Namespace; a bad step is
    a one-line KitError quoting argparse's message instead of usage text and an exit."""
    from kit.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args([str(a) for a in argv])
    except SystemExit:
        lines = err.getvalue().strip().splitlines() or ["error: invalid arguments"]
        raise KitError(f"{argv[0] if argv else 'kit'}: {lines[-1].split('error: ', 1)[-1]}") from None


def run_plan(steps: list[tuple[str, list[str]]]) -> list[tuple[str, float]]:
    """Run each step in this process through kit's CLI; stop at the first failure. -> [(name, seconds)]."""
    from kit.runner import run_kit

    for name, argv in steps:  # every step parses before the first one runs (minutes of GPU time)
        try:
            parse_step(argv)
        except KitError as e:
            raise KitError(f"step '{name}': {e}") from None
    return [(name, run_kit(*argv, name=name)) for name, argv in steps]
