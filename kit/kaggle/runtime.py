"""What the offline inference notebook does: find its inputs, choose quick or full, run the command plan."""
from __future__ import annotations

import json
import os
from pathlib import Path

from kit.errors import KitError
from kit.kaggle import KAGGLE_INPUT, KAGGLE_WORKING, MANIFEST  # noqa: F401 (the notebook reads KAGGLE_WORKING here)



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
    from kit.runner import run_kit

    return [(name, run_kit(*argv, name=name)) for name, argv in steps]
