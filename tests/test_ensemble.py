"""Ensemble rules on hand-made inputs; expected numbers worked out by hand in the comments."""
import numpy as np
import pandas as pd
import pytest

import kit.ensemble.rules as E
import kit.truth as T
from kit.errors import KitError
from kit.predictions import Predictions, load_predictions, save_predictions


def P(rows):
    """{id: [(label, score), ...]} -> Predictions (rows padded with -1/0)."""
    k = max(len(v) for v in rows.values())
    labels = [[lab for lab, _ in v] + [-1] * (k - len(v)) for v in rows.values()]
    scores = [[s for _, s in v] + [0.0] * (k - len(v)) for v in rows.values()]
    return Predictions(list(rows), labels, scores)


# three models; M0 lacks "d", M1 lacks "c"
M0 = P({"a": [(1, 0.6)], "b": [(2, 0.3)], "c": [(3, 0.5)]})
M1 = P({"a": [(1, 0.9)], "b": [(5, 0.8)], "d": [(4, 0.7)]})
M2 = P({"a": [(7, 0.4)], "b": [(2, 0.2)], "c": [(3, 0.1)], "d": [(4, 0.2)]})


def check(pred, ids, labels, scores):
    assert pred.ids.tolist() == ids
    np.testing.assert_array_equal(pred.labels[:, 0], labels)
    np.testing.assert_allclose(pred.scores[:, 0], scores, atol=1e-6)


def test_align_keeps_union_of_ids():
    a0, a1 = E.align([M0, M1])
    assert a0.ids.tolist() == a1.ids.tolist() == ["a", "b", "c", "d"]
    assert a0.labels[3, 0] == -1 and a1.labels[2, 0] == -1


def test_max():
    # a: max(0.6, 0.9, 0.4) -> M1; b: 0.8 M1; c: 0.5 M0 (M1 absent); d: 0.7 M1 (M0 absent)
    check(E.ens_max([M0, M1, M2]), ["a", "b", "c", "d"], [1, 5, 3, 4], [0.9, 0.8, 0.5, 0.7])


def test_correct():
    # a: same label 1 -> M1's 0.9; b: differ -> base (2, 0.3); c: M1 absent -> base; d: base absent -> M1's
    check(E.ens_correct([M0, M1]), ["a", "b", "c", "d"], [1, 2, 3, 4], [0.9, 0.3, 0.5, 0.7])
    with pytest.raises(KitError, match="exactly 2"):
        E.ens_correct([M0, M1, M2])


def test_boost():
    # a: 0.6 + 0.5*0.9 = 1.05; b: 0.3 + 0.5*0.2 = 0.4; c: 0.5 + 0.5*0.1 = 0.55;
    # d: M0 absent -> base M1 (4, 0.7) + 0.5*0.2 = 0.8
    check(E.ens_boost([M0, M1, M2]), ["a", "b", "c", "d"], [1, 2, 3, 4], [1.05, 0.4, 0.55, 0.8])
    check(E.ens_boost([M0, M1, M2], alpha=1.0), ["a", "b", "c", "d"], [1, 2, 3, 4], [1.5, 0.5, 0.6, 0.9])


def test_weighted():
    # weights (1, 2, 1), sum 4; base order M1, M0, M2
    # a: base M1 label 1; agree M0, M1: (0.6 + 2*0.9)/4 = 0.6
    # b: base M1 label 5, only M1: 2*0.8/4 = 0.4
    # c: M1 absent -> base M0 label 3; agree M0, M2: (0.5 + 0.1)/4 = 0.15
    # d: base M1 label 4; agree M1, M2: (2*0.7 + 0.2)/4 = 0.4
    check(E.ens_weighted([M0, M1, M2], weights=[1, 2, 1]), ["a", "b", "c", "d"], [1, 5, 3, 4],
          [0.6, 0.4, 0.15, 0.4])
    # equal weights: base M0 first; a: (0.6+0.9)/3 = 0.5; b: (0.3+0.2)/3; c: (0.5+0.1)/3; d: M1 (0.7+0.2)/3
    check(E.ens_weighted([M0, M1, M2]), ["a", "b", "c", "d"], [1, 2, 3, 4], [0.5, 0.5 / 3, 0.2, 0.3])
    with pytest.raises(KitError, match="2 weights for 3 inputs"):
        E.ens_weighted([M0, M1, M2], weights=[1, 2])


S0 = P({"x": [(1, 0.6), (2, 0.3)], "y": [(3, 0.9)]})
S1 = P({"x": [(2, 0.7), (1, 0.2)], "z": [(4, 0.5), (5, 0.4)]})


def test_soft_average():
    # equal weights: x: label 1 (0.6+0.2)/2 = 0.4, label 2 (0.3+0.7)/2 = 0.5; y: 3 -> 0.45; z: 4 -> 0.25, 5 -> 0.2
    out = E.soft_average([S0, S1])
    assert out.ids.tolist() == ["x", "y", "z"]
    np.testing.assert_array_equal(out.labels, [[2, 1], [3, -1], [4, 5]])
    np.testing.assert_allclose(out.scores, [[0.5, 0.4], [0.45, 0], [0.25, 0.2]], atol=1e-6)
    # weights (3, 1): x: 1 -> (1.8+0.2)/4 = 0.5, 2 -> (0.9+0.7)/4 = 0.4
    out = E.soft_average([S0, S1], weights=[3, 1], topk=1)
    np.testing.assert_array_equal(out.labels[:, 0], [1, 3, 4])
    np.testing.assert_allclose(out.scores[:, 0], [0.5, 0.675, 0.125], atol=1e-6)


def _truth(d):
    df = pd.DataFrame({"id": list(d), "landmarks": [[v] if v >= 0 else [] for v in d.values()]})
    return df


def test_fit_soft_weights_picks_the_model_that_is_right():
    # truth x=1: the average picks 1 only if w0*0.6 + w1*0.2 > w0*0.3 + w1*0.7, i.e. w0 > 5/8
    truth = _truth({"x": 1, "y": 3, "z": 4})
    w = E.fit_soft_weights([S0, S1], truth, step=0.1)
    np.testing.assert_allclose(w, [0.7, 0.3])  # first grid point above 5/8 (grid in steps of 0.1)
    assert T.score_gap(E.soft_average([S0, S1], w), truth) == pytest.approx(1.0)
    assert T.score_gap(E.soft_average([S0, S1]), truth) < 1.0


def test_score_gap_with_folds_csv_scores_only_predicted_ids(tmp_path):
    folds = tmp_path / "folds.csv"
    pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "landmark_id": [1, 5, 9, 4, 8],
                  "label": [0, 1, 2, 3, 4], "fold": 0}).to_csv(folds, index=False)
    truth = T.load_truth(folds)
    # max ensemble: a (1, .9) right, b (5, .8) right, c (3, .5) wrong, d (4, .7) right; "e" not predicted
    # sorted: a .9 hit 1/1, b .8 hit 2/2, d .7 hit 3/3, c .5 miss -> GAP = 3/4
    assert T.score_gap(E.ens_max([M0, M1, M2]), truth) == pytest.approx(0.75)


def test_load_any_reads_submission_csv(tmp_path):
    csv = tmp_path / "sub.csv"
    csv.write_text("id,landmarks\na,1 0.6\nb,\nc,3 0.5\n")
    p = E.load_any(csv)
    assert p.ids.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(p.labels[:, 0], [1, -1, 3])
    np.testing.assert_allclose(p.scores[:, 0], [0.6, 0, 0.5])
    with pytest.raises(KitError, match="expected a prediction"):
        E.load_any(tmp_path / "x.txt")


def test_run_ensemble_files_and_discovery(tmp_path):
    sub = tmp_path / "predictions"
    for name, p in (("m0", M0), ("m1", M1)):
        save_predictions(p, sub / name / "test_fold0.npz")
    # validation: m0 right on 1 of 2 landmark images, m1 on both -> GAPs 0.5 and 1.0
    save_predictions(P({"v1": [(1, 0.9)], "v2": [(3, 0.8)]}), sub / "m0" / "val_fold0.npz")
    save_predictions(P({"v1": [(1, 0.9)], "v2": [(2, 0.8)]}), sub / "m1" / "val_fold0.npz")
    folds = tmp_path / "folds.csv"
    pd.DataFrame({"id": ["v1", "v2"], "landmark_id": [1, 2], "label": [0, 1], "fold": 0}).to_csv(folds, index=False)
    for name in ("m0", "m1"):
        (tmp_path / "runs" / name / "fold0").mkdir(parents=True)
        (tmp_path / "runs" / name / "fold0" / "config.yaml").write_text(f"data:\n  folds_csv: {folds}\n")
    logs = []
    res = E.run_ensemble("weighted", out=tmp_path / "submission.csv", ensembles_dir=tmp_path / "ensembles",
                         predictions_dir=sub, runs_dir=tmp_path / "runs", log=logs.append)
    np.testing.assert_allclose(res["weights"], [0.5, 1.0])
    # weights (0.5, 1): base M1 where present: a: (0.5*0.6 + 0.9)/1.5 = 0.8; b: 0.8/1.5; c: M0 0.25/1.5; d: 0.7/1.5
    out = load_predictions(tmp_path / "ensembles" / "weighted.npz")
    check(out, ["a", "b", "c", "d"], [1, 5, 3, 4], [0.8, 0.8 / 1.5, 0.25 / 1.5, 0.7 / 1.5])
    lines = (tmp_path / "submission.csv").read_text().splitlines()
    assert lines[0] == "id,landmarks" and lines[1].startswith("a,1 0.8")
    # the same weights from --fit-on + --solution, printing each model's GAP and the ensemble's
    res = E.run_ensemble("weighted", [sub / "m0" / "test_fold0.npz", sub / "m1" / "test_fold0.npz"],
                         out=tmp_path / "s2.csv", solution=folds, ensembles_dir=tmp_path / "ensembles",
                         fit_on=[sub / "m0" / "val_fold0.npz", sub / "m1" / "val_fold0.npz"], log=logs.append)
    np.testing.assert_allclose(res["weights"], [0.5, 1.0])
    # val ensemble: v1 label 1 (.9*.5+.9)/1.5 = .9 hit; v2 base m1 label 2, .8/1.5 hit -> GAP 1
    assert res["gaps"] == {"m0/val_fold0.npz": 0.5, "m1/val_fold0.npz": 1.0, "ensemble:weighted": 1.0}
    assert any(line.startswith("GAP 1.000000  ensemble:weighted") for line in logs)


def test_fit_soft_weights_coordinate_search_when_grid_is_large():
    # 5 models, step 0.05: 10626 grid points > 2000 -> coordinate search from equal weights.
    # Only model 3 is right (label 1, 0.4); the others say label 2 with 0.5: label 1 wins iff
    # 0.4*w3 > 0.5*(1 - w3), i.e. w3 > 5/9 -> first grid value 0.6; the others share 0.4 equally.
    ids = ["x1", "x2"]
    models = [P({i: [(1, 0.4)] if j == 3 else [(2, 0.5)] for i in ids}) for j in range(5)]
    truth = _truth({i: 1 for i in ids})
    w = E.fit_soft_weights(models, truth, step=0.05)
    np.testing.assert_allclose(w, [0.1, 0.1, 0.1, 0.6, 0.1])


def test_ensemble_command_mixes_npz_and_csv_and_scores(tmp_path, capsys):
    from kit.cli import main

    save_predictions(M0, tmp_path / "m0.npz")
    (tmp_path / "m1.csv").write_text("id,landmarks\na,1 0.9\nb,5 0.8\nd,4 0.7\n")
    sol = tmp_path / "solution.csv"
    sol.write_text("id,landmarks\na,1\nb,2\nc,\nd,4\n")
    out = tmp_path / "sub.csv"
    rc = main(["ensemble", "boost", str(tmp_path / "m0.npz"), str(tmp_path / "m1.csv"), "--alpha", "1",
               "--solution", str(sol), "--out", str(out), "--ensembles-dir", str(tmp_path / "ens")])
    assert rc == 0
    # boost alpha 1: a (1, 0.6+0.9=1.5) hit, b (2, 0.3) hit, c (3, 0.5) miss (non-landmark), d (4, 0.7) hit
    # ranked a 1.5 hit 1/1, d .7 hit 2/2, c .5 miss, b .3 hit 3/4 -> (1 + 1 + 0.75) / 3 landmark images
    assert f"GAP {2.75 / 3:.6f}  ensemble:boost" in capsys.readouterr().out
    assert out.read_text().splitlines() == ["id,landmarks", "a,1 1.5", "b,2 0.3", "c,3 0.5", "d,4 0.7"]
    assert load_predictions(tmp_path / "ens" / "boost.npz").ids.tolist() == ["a", "b", "c", "d"]
    # a method's wrong arity is a one-line error
    m0 = str(tmp_path / "m0.npz")
    assert main(["ensemble", "correct", m0, m0, m0, "--out", str(out)]) == 2
    assert "needs exactly 2 inputs" in capsys.readouterr().err
    # an "ensemble" of one file is refused, and nothing is written
    out.unlink()
    assert main(["ensemble", "soft", m0, "--out", str(out)]) == 2
    assert "needs at least 2 prediction files, 1 given" in capsys.readouterr().err and not out.exists()
