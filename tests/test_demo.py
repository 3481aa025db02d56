"""`kit demo --quick`: the demo recipe end to end on tiny synthetic data, through kit's one runner."""
from __future__ import annotations

import json

from kit.cli import main


def test_quick_demo_runs_every_stage_and_ends_with_the_gap(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "d"
    assert main(["demo", "--out-dir", str(out), "--quick"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    stages = ["synth", "top2k", "top18k", "model18k", "model2k", "predict18k", "predict2k", "soft", "filter",
              "rerank", "select", "submission"]
    for i, sid in enumerate(stages, 1):
        assert any(line.startswith(f"[{i}/12] {sid}") and line.endswith(" s") for line in lines), sid
    assert lines[-1].startswith("GAP ") and 0.0 <= float(lines[-1][4:]) <= 1.0
    assert lines[-2].startswith("validation GAP ")
    choice = json.loads((out / "select" / "choice.json").read_text())
    assert choice["choice"] in ("rerank", "filter")
    # retrieval + re-rank on the 18k-like model's embeddings beats the classifier ensemble by far here
    assert choice["validation_gap"]["rerank"] > choice["validation_gap"]["filter"]
    for name in ("submission.csv", "top18k/val_solution.csv", "model2k/fold0/best.pt", "model18k/fold0/curves.png",
                 "predict18k/test.npz", "soft/test.npz", "soft/weights.json", "rerank/test.inliers.npz",
                 "filter/filter.json"):
        assert (out / name).is_file(), name
    sub = (out / "submission.csv").read_text().splitlines()
    sample = (out / "synth" / "data" / "sample_submission.csv").read_text().splitlines()
    assert sub[0] == "id,landmarks" and len(sub) == len(sample)
    # a second run finds every stage done and prints the same GAP
    assert main(["demo", "--out-dir", str(out), "--quick"]) == 0
    again = capsys.readouterr().out.strip().splitlines()
    assert sum("done before, skipped" in line for line in again) == 12 and again[-1] == lines[-1]
