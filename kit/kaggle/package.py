"""`kit kaggle package`: offline wheels, a models dataset (checkpoints + manifest) and a kernel folder."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kit.errors import KitError
from kit.io import atomic_path, write_json
from kit.kaggle import COMPETITION, DEFAULT_DEPS, MANIFEST



def project_root() -> Path:
    """kit's source tree (an editable install or a checkout), needed to build kit's own wheel."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise KitError(f"{root}: no pyproject.toml; build the wheel from a kit checkout (pip install -e .)")
    return root


def _pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def build_kit_wheel(out: Path) -> Path:
    """`pip wheel --no-deps` of kit from a clean copy of the source (no network, no stale build/ files)."""
    root = project_root()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(root / "kit", src / "kit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        r = _pip(["wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp])
        wheels = sorted(Path(tmp).glob("kit-*.whl"))
        if r.returncode or not wheels:
            tail = (r.stderr.strip().splitlines() or ["no wheel written"])[-1]
            raise KitError(f"cannot build kit's wheel: {tail}")
        return _copy(wheels[0], out / wheels[0].name)


def fetch_wheel(spec: str, out: Path, find_links=()) -> bool:
    """`pip download --no-deps` one package into `out`: only from `find_links` dirs when given (offline),
    else from the index. False (and a message) when pip cannot get it."""
    index = [a for d in find_links for a in ("--find-links", str(d))]
    index = ["--no-index", *index] if find_links else ["--timeout", "15", "--retries", "1"]
    r = _pip(["download", spec, "--no-deps", "--only-binary=:all:", "-q", "-d", str(out), *index])
    if r.returncode:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        print(f"kit: skipped wheel {spec}: pip download failed ({tail}); add its wheel to {out} by hand "
              "or pass --find-links DIR", file=sys.stderr)
    return r.returncode == 0


def dataset_metadata(user: str, slug: str, title: str) -> dict:
    """dataset-metadata.json as `kaggle datasets create -p` reads it (id, title, licenses)."""
    return {"title": title, "id": f"{user}/{slug}", "licenses": [{"name": "CC0-1.0"}]}


def kernel_metadata(user: str, slug: str, title: str, datasets: list[str], competition: str) -> dict:
    """kernel-metadata.json as `kaggle kernels push -p` reads it: notebook, GPU on, internet off."""
    return {"id": f"{user}/{slug}", "title": title, "code_file": "inference.ipynb", "language": "python",
            "kernel_type": "notebook", "is_private": True, "enable_gpu": True, "enable_tpu": False,
            "enable_internet": False, "dataset_sources": datasets, "competition_sources": [competition],
            "kernel_sources": [], "model_sources": []}


def _copy(src: str | os.PathLike, dest: Path) -> Path:
    """Copy a file atomically (checkpoints are large: no half-written best.pt after an interrupt)."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest


def _copy_params(stage: str, out: Path) -> list[str]:
    """shlex-split a stage spec ("soft --weights w.json"); files in it are copied to out/params/ and
    replaced by "{models}/params/NAME" (resolved on Kaggle)."""
    args = shlex.split(stage)
    for i, a in enumerate(args[1:], 1):
        if Path(a).is_file():
            _copy(a, out / "params" / Path(a).name)
            args[i] = "{models}/params/" + Path(a).name
    return args


def _copy_run(run: str | os.PathLike, out: Path) -> dict:
    """runs/EXP/foldN/{best.pt,config.yaml} -> out/runs/EXP/foldN/ ; -> {"exp", "fold"}."""
    run = Path(run)
    if not run.name.startswith("fold") or not run.name[4:].isdigit():
        raise KitError(f"{run}: a run directory is runs/<exp>/fold<N>")
    for name in ("best.pt", "config.yaml"):
        if not (run / name).is_file():
            raise KitError(f"{run}: no {name} (train the fold first: kit train --fold {run.name[4:]})")
    for name in ("best.pt", "config.yaml"):
        _copy(run / name, out / "runs" / run.parent.name / run.name / name)
    return {"exp": run.parent.name, "fold": int(run.name[4:])}


def package(out: str | os.PathLike, user: str, runs=(), filters=(), ensemble: str | None = None,
            deps=DEFAULT_DEPS, wheels: bool = True, find_links=(), competition: str = COMPETITION,
            prefix: str = "kit", public_test_count: int = 0, notebook: str | os.PathLike | None = None) -> dict:
    """Build OUT/{prefix}-wheels, OUT/{prefix}-models (datasets) and OUT/kernel (notebook) -> their paths."""
    from kit import __version__

    out = Path(out)
    notebook = Path(notebook) if notebook else project_root() / "notebooks" / "inference.ipynb"
    if not notebook.is_file():
        raise KitError(f"{notebook}: notebook not found (python notebooks/make_notebook.py writes it)")
    if not runs:
        raise KitError("package: no runs given (--runs runs/<exp>/fold<N> ...)")
    paths, datasets = {}, [f"{user}/{prefix}-wheels", f"{user}/{prefix}-models"]  # --no-wheels: uploaded before
    if wheels:
        wdir = out / f"{prefix}-wheels"
        build_kit_wheel(wdir)
        skipped = [s for s in deps if not fetch_wheel(s, wdir, find_links)]
        built = sorted(p.name for p in wdir.glob("*.whl"))
        write_json(dataset_metadata(user, f"{prefix}-wheels", f"{prefix} wheels"), wdir / "dataset-metadata.json")
        paths["wheels"], paths["skipped"], paths["wheel_files"] = wdir, skipped, built
    mdir = out / f"{prefix}-models"
    for old in ("runs", "params"):  # a re-package must not ship runs left from an earlier one
        shutil.rmtree(mdir / old, ignore_errors=True)
    manifest = {"kit_version": __version__, "competition": competition, "public_test_count": int(public_test_count),
                "runs": [_copy_run(r, mdir) for r in runs],
                "ensemble": _copy_params(ensemble, mdir) if ensemble else None,
                "filters": [_copy_params(f, mdir) for f in filters]}
    write_json(manifest, mdir / MANIFEST)
    write_json(dataset_metadata(user, f"{prefix}-models", f"{prefix} models"), mdir / "dataset-metadata.json")
    kdir = out / "kernel"
    _copy(notebook, kdir / "inference.ipynb")
    write_json(kernel_metadata(user, f"{prefix}-inference", f"{prefix} inference", datasets, competition),
               kdir / "kernel-metadata.json")
    paths.update(models=mdir, kernel=kdir, manifest=manifest)
    return paths

