"""bench/real_data.py builds a GLDv2-layout view of a ../shared/data-like folder; bench/real.py exits 0 without it."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import real  # noqa: E402
import real_data  # noqa: E402
from kit.errors import KitError  # noqa: E402
from kit.layout import image_path  # noqa: E402


def jpg(path: Path, value: int) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


@pytest.fixture
def shared(tmp_path):
    """4 train images (classes 0, 0, 1, 2), 4 queries (2 labelled, 2 non-landmark), 2 x 4 distractors."""
    root = tmp_path / "shared"
    op = pd.DataFrame({"id": ["a_1", "a_2", "b_1", "c_1", "a_q", "b_q", "x_q", "y_q"],
                       "landmark_id": [0, 0, 1, 2, 0, 1, None, None],
                       "split": ["train"] * 4 + ["query"] * 4})
    dis = pd.DataFrame({"id": [f"{c}_{i}" for c in ("cat", "dog") for i in range(4)],
                        "source": ["caltech101/cat"] * 4 + ["caltech101/dog"] * 4})
    for name, df in (("oxford_paris", op), ("distractors", dis)):
        (root / name).mkdir(parents=True)
        df.to_csv(root / name / "labels.csv", index=False)
        for k, i in enumerate(df["id"]):
            jpg(root / name / "images" / f"{i}.jpg", k)
    return root


def test_layout_builder(shared, tmp_path):
    out = tmp_path / "view"
    counts = real_data.build_layout(shared, out)
    assert counts == {"train_images": 4, "train_classes": 3, "test_images": 8, "test_landmark_images": 2,
                      "test_nonlandmark_queries": 2, "test_distractors": 4, "fit_distractors": 4, "linked": True}
    idmap = pd.read_csv(out / "id_map.csv", dtype={"id": str})
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in idmap["id"]) and idmap["id"].is_unique
    new = dict(zip(idmap["original"], idmap["id"]))

    train = pd.read_csv(out / "train.csv", dtype={"id": str})
    assert list(train.columns) == ["id", "url", "landmark_id"]
    assert train["id"].tolist() == [new[o] for o in ("a_1", "a_2", "b_1", "c_1")]
    assert train["landmark_id"].tolist() == [0, 0, 1, 2]
    link = image_path(out, "train", new["b_1"])
    assert link.is_symlink() and link.resolve() == (shared / "oxford_paris" / "images" / "b_1.jpg").resolve()

    # every other distractor of each category (sorted by id) fits filters; the rest joins the test set
    fit = pd.read_csv(out / "distractors.csv", dtype={"id": str})["id"].tolist()
    assert fit == [new[o] for o in ("cat_0", "cat_2", "dog_0", "dog_2")]
    assert all(image_path(out, "distractors", i).is_file() for i in fit)
    sol = pd.read_csv(out / "test_solution.csv", dtype=str, keep_default_na=False)
    truth = dict(zip(sol["id"], sol["landmarks"]))
    expected = {"a_q": "0", "b_q": "1", "x_q": "", "y_q": "", "cat_1": "", "cat_3": "", "dog_1": "", "dog_3": ""}
    assert truth == {new[o]: v for o, v in expected.items()}
    sample = pd.read_csv(out / "sample_submission.csv", dtype=str)
    assert sample["id"].tolist() == sol["id"].tolist()
    assert all(image_path(out, "test", i).is_file() for i in sol["id"])
    assert not set(fit) & set(sol["id"])

    # rebuilding is idempotent and a copy instead of links gives the same files
    assert real_data.build_layout(shared, out) == counts
    copied = real_data.build_layout(shared, tmp_path / "copy", link=False)
    assert copied["linked"] is False
    path = image_path(tmp_path / "copy", "test", new["x_q"])
    assert not path.is_symlink() and path.read_bytes() == (shared / "oxford_paris" / "images" / "x_q.jpg").read_bytes()


def test_layout_names_a_missing_image(shared, tmp_path):
    (shared / "distractors" / "images" / "dog_3.jpg").unlink()
    with pytest.raises(KitError, match=r"dog_3\.jpg: image file not found \(1 missing"):
        real_data.build_layout(shared, tmp_path / "view")


def test_absent_shared_folder_prints_and_exits_0(tmp_path, capsys):
    out = tmp_path / "real.json"
    rc = real.main(["--shared", str(tmp_path / "nope"), "--work-dir", str(tmp_path / "work"), "--out", str(out)])
    assert rc == 0
    assert f"{tmp_path / 'nope'}: shared data folder absent" in capsys.readouterr().out
    assert not out.exists() and not (tmp_path / "work").exists()


def test_readme_table_is_regenerated_from_the_json(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{real.TABLE_BEGIN}\nold table\n{real.TABLE_END}\nafter\n")
    result = {"table": {"zero-training kNN": {"val": {"gap": 0.5, "accuracy": 0.75},
                                              "test": {"gap": 0.25, "accuracy": 0.5, "sensitivity": 1.0, "specificity": 0.0},
                                              "seconds_per_image": 0.01234},
                        "filter:sift on x": {"test": {"gap": 0.3, "accuracy": 0.5, "sensitivity": 0.6, "specificity": 0.9}}}}
    assert real.update_readme(result, readme)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("after\n")
    assert "| zero-training kNN | 0.5000 | 0.7500 | 0.2500 | 0.5000 | 1.0000 | 0.0000 | 0.0123 |" in text
    assert "| filter:sift on x |  |  | 0.3000 | 0.5000 | 0.6000 | 0.9000 |  |" in text
    readme.write_text("no markers\n")
    assert not real.update_readme(result, readme) and readme.read_text() == "no markers\n"


def test_halves_split_any_ids_evenly():
    ids = np.array([f"{i:03d}" for i in range(11)])[::-1]
    h = real.halves(ids)
    assert set(h) == {0, 1} and abs(int(h.sum()) - 5) <= 1
    assert (h == real.halves(ids)).all()


def test_cross_fitted_ensemble_scores_each_half_with_the_other_halfs_weights():
    """Model A is right on half 0 only, model B on half 1 only: in-sample weights can follow whichever half
    is larger, but each half scored with the OTHER half's weights gets the wrong model (no fitting credit)."""
    from kit.predictions import Predictions

    ids = np.array([f"{i:02d}" for i in range(20)])
    half = real.halves(ids)
    truth_labels = 10 + np.arange(20) % 3     # the wrong label 0 wins label ties, so equal weights never fit
    a = np.where(half == 0, truth_labels, 0)
    b = np.where(half == 1, truth_labels, 0)
    preds = [Predictions(ids, lab[:, None], np.full((20, 1), 0.9)) for lab in (a, b)]
    truth = pd.DataFrame({"id": ids, "landmarks": [[int(t)] for t in truth_labels]})
    cross = real.cross_fitted(preds, truth).reindex(ids)
    assert (cross.labels[:, 0] == 0).all()            # every row predicted by the model fitted elsewhere
    same = [Predictions(ids, truth_labels[:, None], np.full((20, 1), 0.9))] * 2   # both right: cross-fit is right
    assert (real.cross_fitted(same, truth).reindex(ids).labels[:, 0] == truth_labels).all()


def test_layout_restricted_to_some_landmarks(shared, tmp_path):
    """--landmarks PREFIX keeps the classes so named (classes.csv) and every non-landmark image."""
    pd.DataFrame({"landmark_id": [0, 1, 2], "name": ["ox_a", "pa_b", "ox_c"]}).to_csv(
        shared / "oxford_paris" / "classes.csv", index=False)
    counts = real_data.build_layout(shared, tmp_path / "ox", landmarks="ox_")
    assert counts["train_images"] == 3 and counts["train_classes"] == 2          # a_1, a_2, c_1
    assert counts["test_landmark_images"] == 1 and counts["test_nonlandmark_queries"] == 2   # a_q; x_q, y_q
    assert counts["test_distractors"] == 4 and counts["fit_distractors"] == 4
    with pytest.raises(KitError, match=r"no class name starts with 'zz_'"):
        real_data.build_layout(shared, tmp_path / "zz", landmarks="zz_")


def test_pick_row_keeps_the_default_unless_another_row_clearly_leads():
    from kit.predictions import Predictions

    n = 40
    ids = np.array([f"{i:03d}" for i in range(n)])
    truth_labels = np.where(np.arange(n) < 20, np.arange(n) % 4, -1)       # 20 landmarks, 20 non-landmarks
    truth = pd.DataFrame({"id": ids, "landmarks": [[int(t)] if t >= 0 else [] for t in truth_labels]})
    rng = np.random.default_rng(1)

    def row(wrong):
        lab = np.where(truth_labels >= 0, truth_labels, 0)
        lab[list(wrong)] = 9                                                # these landmarks predicted wrong
        return Predictions(ids, lab[:, None], rng.random((n, 1)) * 0.1 + (truth_labels >= 0)[:, None])

    # "close" has one error fewer, but on other images (11 of 20 landmarks disagree): a lead within noise
    default, close, far = row(range(0, 6)), row(range(6, 11)), row([])
    best, pick = real.pick_row({"default": default, "close": close}, truth, "default")
    assert best == "default" and pick["argmax"] == "close" and 0 < pick["lead_over_default"] <= pick["paired_se"]
    best, pick = real.pick_row({"default": default, "close": close, "far": far}, truth, "default")
    assert best == "far" and pick["lead_over_default"] > pick["paired_se"]
    assert real.pick_row({"default": far, "close": close}, truth, "default")[0] == "default"   # default is the argmax
