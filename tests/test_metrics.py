"""GAP against hand-computed cases and against the naive reference; the other metrics by hand."""
import numpy as np
import pandas as pd
import pytest

from kit.errors import KitError
from kit.metrics import accuracy, gap, gap_frames, gap_reference, sensitivity_specificity


def frames(pred: dict, truth: dict, usage: dict | None = None):
    """pred {id: (label, score)}, truth {id: [landmarks]} -> (sub_df, sol_df)."""
    sub = pd.DataFrame([(i, lab, sc) for i, (lab, sc) in pred.items()], columns=["id", "label", "score"])
    sol = pd.DataFrame({"id": list(truth), "landmarks": list(truth.values())})
    if usage:
        sol["usage"] = [usage[i] for i in truth]
    return sub, sol


def test_gap_non_landmark_prediction_and_missing_prediction():
    # a (1, .9) correct P=1/1; c is a non-landmark, its prediction counts at rank 2;
    # b (2, .7) correct at rank 3: P=2/3; d has no prediction but counts in M=3.
    pred = {"a": (1, 0.9), "b": (2, 0.7), "c": (5, 0.8), "d": (-1, 0.0)}
    truth = {"a": [1], "b": [2], "c": [], "d": [3]}
    expected = (1 + 2 / 3) / 3
    assert gap([1, 2, 5, -1], [0.9, 0.7, 0.8, 0.0], [1, 2, -1, 3], ["a", "b", "c", "d"]) == pytest.approx(expected)
    assert gap_frames(*frames(pred, truth)) == pytest.approx(expected)
    assert gap_reference(pred, truth) == pytest.approx(expected)


def test_gap_ties_broken_by_id_ascending():
    # equal scores: 'a' (correct) ranks before 'b' (wrong) whatever the row order -> 1/1 / M=2
    assert gap([3, 1], [0.5, 0.5], [2, 1], ["b", "a"]) == pytest.approx(0.5)
    assert gap([1, 3], [0.5, 0.5], [1, 2], ["a", "b"]) == pytest.approx(0.5)
    # if 'b' ranked first the answer would be (1/2)/2; without ids the row order decides
    assert gap([3, 1], [0.5, 0.5], [2, 1]) == pytest.approx(0.25)
    assert gap_frames(*frames({"b": (3, 0.5), "a": (1, 0.5)}, {"b": [2], "a": [1]})) == pytest.approx(0.5)


def test_gap_multi_landmark_truth():
    # a's truth holds 1 and 2: predicting 2 is correct (P=1); b wrong; M=2
    sub, sol = frames({"a": (2, 0.9), "b": (4, 0.8)}, {"a": [1, 2], "b": [3]})
    assert gap_frames(sub, sol) == pytest.approx(0.5)


def test_gap_edge_cases():
    assert gap([-1, -1], [0, 0], [1, 2]) == 0.0                   # no predictions at all
    assert gap([7, 7], [0.9, 0.5], [-1, 7]) == pytest.approx(0.5)  # non-landmark ranked first: P(2)=1/2
    assert gap([1, 2, 3], [0.1, 0.2, 0.3], [1, 2, 3]) == pytest.approx(1.0)
    assert gap([1], [0.5], [-1]) == 0.0                           # no landmark in the truth: reported as 0
    with pytest.raises(KitError, match="non-finite"):
        gap([1], [np.nan], [1])


def test_gap_frames_ignored_usage_and_bad_ids():
    sub, sol = frames({"a": (1, 0.5), "b": (9, 0.9)}, {"a": [1], "b": []}, {"a": "Public", "b": "Ignored"})
    assert gap_frames(sub, sol) == pytest.approx(1.0)  # b's wrong prediction would make it 0.5
    assert gap_frames(sub, sol.drop(columns="usage")) == pytest.approx(0.5)
    with pytest.raises(KitError, match="not in the solution"):
        gap_frames(*frames({"z": (1, 0.5)}, {"a": [1]}))
    dup = pd.DataFrame({"id": ["a", "a"], "label": [1, 1], "score": [0.5, 0.4]})
    with pytest.raises(KitError, match="duplicate id a"):
        gap_frames(dup, frames({}, {"a": [1]})[1])


@pytest.mark.parametrize("seed", range(40))
def test_gap_equals_reference_on_random_cases_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    ids = np.array([f"{x:04x}" for x in rng.permutation(5000)[:n]])
    truth = {i: sorted(set(rng.integers(0, 5, rng.integers(0, 3)).tolist())) if rng.random() < 0.6 else []
             for i in ids}
    pred = {i: (int(rng.integers(-1, 5)), float(rng.integers(0, 5) / 4)) for i in ids}  # few scores: many ties
    ref = gap_reference(pred, truth)
    sub, sol = frames(pred, truth)
    assert gap_frames(sub.sample(frac=1, random_state=seed), sol) == pytest.approx(ref, rel=1e-12, abs=1e-12)
    first = [truth[i][0] if truth[i] else -1 for i in ids]
    single = {i: [f] if f >= 0 else [] for i, f in zip(ids, first)}
    labels, scores = zip(*(pred[i] for i in ids))
    assert gap(labels, scores, first, ids) == pytest.approx(gap_reference(pred, single), rel=1e-12, abs=1e-12)


def test_accuracy_sensitivity_specificity():
    assert accuracy([1, 2, 3], [1, 0, 3]) == pytest.approx(2 / 3)
    sens, spec = sensitivity_specificity([1, 1, 0, 0, 1], [1, 0, 1, 0, 0])
    assert (sens, spec) == (pytest.approx(0.5), pytest.approx(1 / 3))


def test_truth_kind_survives_frame_operations(tmp_path):
    """The kind of truth (solution or labels) is part of the Truth, not of the frame: the same labels after
    concat, merge, copy or a filter score the same GAP; only the kind changes what is scored."""
    from kit.predictions import Predictions
    from kit.truth import Truth, load_truth, score_gap

    pd.DataFrame({"id": ["a", "b", "c", "d", "e", "f"], "landmark_id": [1, 5, 9, 4, 8, -1]}).to_csv(
        tmp_path / "labels.csv", index=False)
    truth = load_truth(tmp_path / "labels.csv")
    assert truth.kind == "labels"
    pred = Predictions(np.array(["a", "b", "c", "d"]), np.array([[1], [5], [3], [4]]), np.array([[.9], [.8], [.5], [.7]]))
    want = score_gap(pred, truth)
    assert want == pytest.approx(0.75)  # e is not predicted: not scored (4 landmarks, 3 right)
    f = truth.frame
    others = {"concat": pd.concat([f.iloc[:3], f.iloc[3:]]),
              "merge": f.merge(pd.DataFrame({"id": f["id"], "extra": 1}), on="id"),
              "copy": f.copy(), "deep copy": f.copy(deep=True), "filter": f[f["id"] != "zz"],
              "reset": f.reset_index(drop=True), "astype": f.astype({"id": object})}
    for name, frame in others.items():
        assert score_gap(pred, Truth(frame, truth.kind)) == want, name
    solution = Truth(f, "solution")  # the same rows as a whole test set: e's missing prediction counts
    assert score_gap(pred, solution) == pytest.approx(3 / 5) and score_gap(pred, f) == score_gap(pred, solution)
    with pytest.raises(ValueError, match="truth kind"):
        Truth(f, "from_labels")
