"""Test GAP / top-1 / sens@0.98 of a work folder's recipe_rerank test predictions, and its calibration's coefficients."""
import json
import sys

sys.path.insert(0, "bench")
from real import score  # noqa: E402

from kit.predictions import load_predictions  # noqa: E402
from kit.truth import load_truth  # noqa: E402

truth = load_truth(sys.argv[1] + "/test_solution.csv").frame
for d in sys.argv[2:]:
    cal = json.load(open(d + "/recipe_rerank/calibration.json"))["model"]
    print(d, score(load_predictions(d + "/recipe_rerank/test.npz"), truth),
          [round(c, 2) for c in cal["coef"]] if cal else None, flush=True)
