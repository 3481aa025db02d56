"""Write notebooks/inference.ipynb, the offline Kaggle inference notebook, from the cells below.

The notebook stays thin (install kit, find paths, call kit); edit this file, not the .ipynb, then run
`python notebooks/make_notebook.py`. tests/test_notebook.py checks that the two agree.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from kit.atomic import write_text

OUT = Path(__file__).with_name("inference.ipynb")

INTRO = """\
# kit: offline inference for Google Landmark Recognition

Runs with internet off. Attach three inputs: the competition, `<user>/kit-wheels` and `<user>/kit-models`
(both built by `kit kaggle package --recipe`). Steps: install kit from the wheels -> run the packaged
recipe (the one `kit run` ran at home, its home-made parts read from the models dataset) on the test
images -> `submission.csv`, with each stage's time.

**The quick path.** A code competition runs the notebook twice: when you save it (on the public copy of
the test set) and when you submit it (on the hidden test set; only this run is scored). Like GLR
2020/2021 competitors, the save run just writes the sample submission: the mode is `quick` when the
test set has exactly the public copy's size (`public_test_count` in the manifest) and Kaggle does not say
it is the rerun (`KAGGLE_IS_COMPETITION_RERUN`). Set `KIT_MODE=full` to run everything on the public
copy (do it once before submitting, to see the timings); `KIT_MODE=quick` forces the fast path.

**Settings.** Recipe overrides in the `SETTINGS` cell, as on `kit run`: `workers=4` suits a Kaggle GPU
notebook (4 CPU cores); e.g. `predict.set.predict.batch_size=64` or `rerank.candidates=5`.

The models dataset works whether Kaggle unpacked its zip (`stages/`) or not (`stages.zip`).
Paths can be overridden with environment variables: `KIT_WHEELS`, `KIT_MODELS`, `KIT_DATA`, `KIT_WORK`."""

INSTALL = """\
import glob, importlib.util, os, subprocess, sys, time
T0 = time.time()
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"  # albumentations would look for updates online on import
# kit is installed from the attached wheels dataset, without network (--no-index) and without
# touching Kaggle's preinstalled torch/timm (--no-deps: every wheel in the dataset is installed).
if importlib.util.find_spec("kit") is None or os.environ.get("KIT_FORCE_INSTALL") == "1":
    WHEELS = os.environ.get("KIT_WHEELS") or next(
        (os.path.dirname(p) for pat in ("/kaggle/input/*/kit-*.whl", "/kaggle/input/datasets/*/*/kit-*.whl")
         for p in sorted(glob.glob(pat))), None)
    assert WHEELS, "kit wheels not found: attach the kit-wheels dataset or set KIT_WHEELS"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "-q",
                    "--find-links", WHEELS, *sorted(glob.glob(os.path.join(WHEELS, "*.whl")))], check=True)
import kit
print(f"kit {kit.__version__} from {os.path.dirname(kit.__file__)} ({time.time() - T0:.1f} s)")"""

PATHS = """\
from pathlib import Path
from kit.kaggle import runtime as kk
from kit.kaggle.submit import validate_submission
from kit.submission import read_sample_ids

MODELS = kk.find_input("KIT_MODELS", kk.MANIFEST)
MANIFEST = kk.load_manifest(MODELS)
DATA = kk.find_input("KIT_DATA", "sample_submission.csv", kk.KAGGLE_INPUT / MANIFEST["competition"])
WORK = Path(os.environ.get("KIT_WORK") or (kk.KAGGLE_WORKING if kk.KAGGLE_WORKING.is_dir() else "."))
SAMPLE, SUBMISSION = DATA / "sample_submission.csv", WORK / "submission.csv"
N_TEST = len(read_sample_ids(SAMPLE))
MODE = kk.choose_mode(N_TEST, MANIFEST["public_test_count"])
print(f"models {MODELS} (recipe {MANIFEST['recipe']['name']}), data {DATA} ({N_TEST} test images), work {WORK}")
print(f"mode: {MODE}")"""

SETTINGS = """\
# Recipe overrides, as on `kit run`: run settings (workers=4) or STAGE.key=value,
# e.g. "predict.set.predict.batch_size=64", "predict.set.predict.tta=hflip", "rerank.candidates=5"
SETTINGS = ["workers=4"]
print("recipe overrides:", " ".join(SETTINGS))"""

RUN = """\
t = time.time()
if MODE == "quick":
    kk.quick_submission(SAMPLE, SUBMISSION)
    TIMINGS = [("quick: sample submission", time.time() - t)]
else:
    TIMINGS = kk.run_packaged(MANIFEST, MODELS, DATA, WORK, SETTINGS)"""

CHECK = """\
info = validate_submission(SUBMISSION, SAMPLE)
print(f"{SUBMISSION}: {info['rows']} rows, {info['predicted']} with a landmark, ids match the sample")
for name, seconds in TIMINGS:
    print(f"{name:>32s} {seconds:8.1f} s")
print(f"{'total (with install)':>32s} {time.time() - T0:8.1f} s")"""


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_markdown_cell(INTRO), new_code_cell(INSTALL), new_code_cell(PATHS),
                             new_code_cell(SETTINGS), new_code_cell(RUN), new_code_cell(CHECK)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"kit-{i}"  # stable ids keep the file byte-identical between runs
    return nb


def main(out: Path = OUT) -> Path:
    nbformat.validate(nb := build())
    return write_text(nbformat.writes(nb), out)


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
