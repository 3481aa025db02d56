"""bench/real_data.py's validation negatives (everyday photos, other buildings, landmarks not in the index)
and bench/real.py's sensitivity at a fixed specificity."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import real  # noqa: E402
import real_data  # noqa: E402
from kit.layout import image_path  # noqa: E402
from kit.predictions import Predictions  # noqa: E402


def jpg(path: Path, value: int = 0) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def make_shared(root: Path) -> Path:
    """oxford_paris: 2 labelled train images (classes 0, 1), 1 labelled query, 2 non-landmark queries;
    porto: 2 train images, 1 landmark + 2 COCO test photos."""
    op = pd.DataFrame({"id": ["a_1", "b_1", "a_q", "x_q", "y_q"], "landmark_id": [0, 1, 0, None, None],
                       "split": ["train", "train", "query", "query", "query"]})
    (root / "oxford_paris").mkdir(parents=True)
    op.to_csv(root / "oxford_paris" / "labels.csv", index=False)
    for i in op["id"]:
        jpg(root / "oxford_paris" / "images" / f"{i}.jpg")
    porto = root / "porto"
    porto.mkdir()
    pd.DataFrame({"id": ["p01", "p02"], "url": "", "landmark_id": [0, 1]}).to_csv(porto / "train.csv", index=False)
    pd.DataFrame({"id": ["t01", "c01", "c02"], "repo": "r", "path": "p", "commit": "c",
                  "kind": ["landmark", "non_landmark", "non_landmark"]}).to_csv(porto / "provenance.csv", index=False)
    pd.DataFrame({"id": ["t01", "c01", "c02"], "landmarks": ["0", "", ""]}).to_csv(porto / "test_solution.csv",
                                                                                    index=False)
    pd.DataFrame({"id": ["d01"]}).to_csv(porto / "distractors.csv", index=False)
    for split, i in (("train", "p01"), ("train", "p02"), ("test", "t01"), ("test", "c01"), ("test", "c02"),
                     ("distractors", "d01")):
        jpg(image_path(porto, split, i))
    return root


def test_validation_negatives_come_from_the_other_sets_only(tmp_path):
    shared = make_shared(tmp_path / "shared")
    pools = real_data.negative_pools(shared)
    assert pools.groupby("pool").size().to_dict() == {"everyday": 2, "op_landmarks": 2, "other_buildings": 2,
                                                      "porto_landmarks": 2}
    assert not set(pools["original"]) & {"oxford_paris/a_q", "porto/t01"}   # labelled queries: never
    # a Porto run: neither its COCO test photos nor its own landmarks; a cap per pool
    neg = real_data.validation_negatives(shared, {"everyday", "porto_landmarks"}, per_pool=1)
    assert sorted(neg["pool"]) == ["op_landmarks", "other_buildings"]
    # an Oxford-only run: the Oxford class (0) of its index is not a negative, the Paris one (1) is
    neg = real_data.validation_negatives(shared, {"other_buildings"}, op_kept={0})
    assert neg.loc[neg["pool"] == "op_landmarks", "original"].tolist() == ["oxford_paris/b_1"]
    # the view: the data's own files untouched, distractors.csv = own + negatives, images linked
    view = tmp_path / "view"
    counts = real_data.add_negatives(shared / "porto", view, neg)
    assert counts["caltech_distractors"] == 1 and counts["everyday"] == 2
    ids = pd.read_csv(view / "distractors.csv", dtype=str)["id"].tolist()
    assert ids[0] == "d01" and len(ids) == 1 + len(neg)
    assert all(image_path(view, "distractors", i).is_file() for i in ids)
    assert (view / "test_solution.csv").read_text() == (shared / "porto" / "test_solution.csv").read_text()
    assert image_path(view, "test", "t01").is_file()


def test_sensitivity_at_specificity_counts_right_classes_above_the_cut():
    from kit.submission import predictions_to_frame
    from kit.truth import load_truth

    truth_csv = Path(__file__).parent / "_tmp_truth.csv"
    ids = [f"n{i:02d}" for i in range(50)] + ["l1", "l2", "l3", "l4"]
    pd.DataFrame({"id": ids, "landmarks": [""] * 50 + ["1", "1", "2", "2"]}).to_csv(truth_csv, index=False)
    try:
        truth = load_truth(truth_csv)
    finally:
        truth_csv.unlink()
    neg = np.linspace(0.1, 0.6, 50)                       # one non-landmark (2% of 50) may score above the cut
    scores = np.r_[neg, 0.9, 0.55, 0.95, 0.7]             # l2 is below the cut (0.59...), l3 has the wrong class
    labels = np.r_[np.zeros(50, int), 1, 1, 5, 2]
    frame = predictions_to_frame(Predictions(np.array(ids), labels[:, None], scores[:, None]))
    assert real.sensitivity_at_specificity(frame, truth, 0.98) == 0.5       # l1 and l4 of 4
    assert real.sensitivity_at_specificity(frame, truth, 0.0) == 0.75       # no cut: every right class counts
