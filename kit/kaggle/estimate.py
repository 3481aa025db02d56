"""`kit kaggle package --estimate N`: packaged inference timed on N test images, projected to the competition."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kit.atomic import write_text
from kit.device import choose_device
from kit.errors import KitError

# GLR 2021 (landmark-recognition-2021): hidden test set, GLDv2 train images, notebook limit
TEST_SIZE, INDEX_SIZE, LIMIT_HOURS = 117_577, 1_580_470, 9.0


def sample_data(data: Path, n: int, dest: Path) -> Path:
    """DEST: the first `n` rows of DATA/sample_submission.csv, DATA's images and CSVs linked."""
    lines = (data / "sample_submission.csv").read_text().splitlines()
    if len(lines) < 2:
        raise KitError(f"{data / 'sample_submission.csv'}: no test rows to time")
    dest.mkdir(parents=True)
    write_text("\n".join(lines[: n + 1]) + "\n", dest / "sample_submission.csv")
    for p in data.iterdir():
        if p.name not in ("sample_submission.csv", "test_solution.csv"):
            os.symlink(p.resolve(), dest / p.name)
    return dest


def estimate(manifest: dict, models: Path, data: Path, n: int, test_size: int = TEST_SIZE,
             index_size: int = INDEX_SIZE, limit_hours: float = LIMIT_HOURS, log=print) -> dict:
    """Per-stage seconds per test image on `n` images and the projected notebook hours."""
    import torch

    from kit.kaggle.runtime import run_packaged  # the pipeline: `kit kaggle --help` reads this module's sizes

    with tempfile.TemporaryDirectory() as tmp:
        small = sample_data(Path(data), n, Path(tmp) / "data")
        timings = run_packaged(manifest, models, small, Path(tmp) / "work", log=lambda *_: None)
        n = min(n, len((small / "sample_submission.csv").read_text().splitlines()) - 1)
    per = {name: sec / n for name, sec in timings}
    embed = [i for i in manifest["recipe"]["stages"] if "predict" in i and i["predict"].get("index") == "embed"]
    index_hours = (sum(per.get(next(iter(i.values())).get("id", "predict"), 0) for i in embed) * index_size / 3600)
    hours = sum(per.values()) * test_size / 3600 + index_hours
    device = choose_device("auto")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    result = {"images": n, "device": name, "seconds_per_image": per, "test_size": test_size,
              "index_size": index_size, "projected_hours": hours, "limit_hours": limit_hours}
    log(f"estimate on {n} test images, measured on {name}:")
    for stage, s in per.items():
        log(f"  {stage:<24} {s:8.4f} s/image")
    log(f"projected notebook time for {test_size} test images" + (f" (+ embedding {index_size} index images)"
                                                                   if embed else "") +
        f": {hours:.2f} h (an estimate; Kaggle's limit {limit_hours:g} h)")
    return result
