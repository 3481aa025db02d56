"""The offline notebook: find inputs and packaged stages, choose quick or full, run the packaged recipe."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kit.errors import KitError
from kit.kaggle import KAGGLE_INPUT, KAGGLE_WORKING, MANIFEST  # noqa: F401 (the notebook reads them here)
import kit.pipeline.stages  # noqa: F401  (registers the stages)
from kit.pipeline.recipe import load_recipe
from kit.pipeline.runner import run_recipe
from kit.submission import read_sample_ids, read_submission, write_submission


def find_input(env_var: str, marker: str, default: Path | None = None, env=None) -> Path:
    """A Kaggle input dir: $env_var, else `default`, else the first /kaggle/input/*/ holding `marker`."""
    env = os.environ if env is None else env
    if env.get(env_var):
        return Path(env[env_var])
    if default is not None and (default / marker).exists():
        return default
    hits = [p for pattern in (f"*/{marker}", f"datasets/*/*/{marker}", f"competitions/*/{marker}")
            for p in sorted(KAGGLE_INPUT.glob(pattern))]
    if hits:
        return hits[0].parent
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


def packaged_dir(models: str | os.PathLike, folder: str, work: str | os.PathLike) -> Path:
    """MODELS/<folder> as it arrived: the folder, Kaggle's unpacked zip, or <folder>.zip extracted once into WORK."""
    models, work = Path(models), Path(work)
    for base in (models / folder / folder, models / folder, work / folder):
        if base.is_dir():
            return base
    archive = models / f"{folder}.zip"
    if archive.is_file():
        shutil.unpack_archive(archive, work / folder)
        return work / folder
    have = ", ".join(sorted(p.name for p in models.iterdir())) if models.is_dir() else "no such folder"
    raise KitError(f"{models}: no {folder}/ (has: {have}); upload the models dataset with --dir-mode zip")


def choose_mode(n_test: int, public_test_count: int = 0, env=None) -> str:
    """'quick' (Kaggle's unscored save run on the public test copy: write the sample) or 'full'; KIT_MODE overrides."""
    env = os.environ if env is None else env
    forced = env.get("KIT_MODE", "auto")
    if forced in ("full", "quick"):
        return forced
    quick = public_test_count and n_test == public_test_count and not env.get("KAGGLE_IS_COMPETITION_RERUN")
    return "quick" if quick else "full"


def quick_submission(sample: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The sample submission, validated and rewritten as `out` (the fast path of `choose_mode`)."""
    return write_submission(read_submission(sample, sample_ids=read_sample_ids(sample)), out)


def run_packaged(manifest: dict, models: str | os.PathLike, data: str | os.PathLike, work: str | os.PathLike,
                 overrides=(), log=print) -> list[tuple[str, float]]:
    """The packaged recipe on the test images, home-made parts from the models dataset -> [(stage, seconds)]; a
    manifest naming a file outside the models dataset is refused."""
    where = Path(models) / MANIFEST
    for f in manifest.get("files") or []:
        if not isinstance(f, str) or Path(f).is_absolute() or ".." in Path(f).parts:
            raise KitError(f"{where}: file '{f}' is outside the models dataset")
    if not isinstance(manifest.get("recipe"), dict):
        raise KitError(f"{where}: no packaged recipe (build the models dataset with `kit kaggle package --recipe`)")
    recipe = load_recipe(manifest["recipe"], overrides)
    shipped = packaged_dir(models, "stages", work)
    result = run_recipe(recipe, data, work, splits=("test",), shipped=shipped, inference=True, log=log)
    return list(result["seconds"].items())
