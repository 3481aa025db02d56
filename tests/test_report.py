"""kit report: rendered from tiny generated inputs; numbers in the tables worked out by hand."""
from __future__ import annotations

import base64
import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from kit.errors import KitError
from kit.layout import image_path
from kit.predictions import Predictions, save_predictions
from kit.report.collect import gallery_picks, rare_threshold, score_by_bucket
from kit.report.render import build_report

TEST = [f"{i:x}" * 16 for i in range(1, 7)]                     # t1..t6, 16-hex ids
TRAIN = [f"a{i:x}{i:x}" + "0" * 12 + f"{i:02x}"[-1] for i in range(11)]
TRAIN_LM = [10] * 6 + [20] * 2 + [30] * 3                          # 6 / 2 / 3 training images
SOLUTION = {TEST[0]: [10], TEST[1]: [10], TEST[2]: [20], TEST[3]: [30], TEST[4]: [], TEST[5]: []}
# top-1 (label, score): t1 right, t2 wrong, t3 right, t4 wrong, t5 a non-landmark predicted, t6 empty
TOP1 = [(10, 0.9), (20, 0.8), (20, 0.7), (10, 0.75), (10, 0.95), (-1, 0.0)]


def _section(page: str, key: str) -> str:
    return re.search(rf'<section id="{key}">(.*?)</section>', page, re.S).group(1)


def _write_inputs(root):
    rng = np.random.default_rng(0)
    data = root / "data"
    for split, ids in (("train", TRAIN), ("test", TEST)):
        for n, i in enumerate(ids):
            p = image_path(data, split, i)
            p.parent.mkdir(parents=True, exist_ok=True)
            img = np.full((40, 32, 3), (20 * n) % 255, np.uint8)
            img[8:24, 8:20] = (0, 0, 255)
            cv2.imwrite(str(p), img)
    pd.DataFrame({"id": TRAIN, "url": "", "landmark_id": TRAIN_LM}).to_csv(data / "train.csv", index=False)
    pd.DataFrame({"id": TEST, "landmarks": [" ".join(map(str, v)) for v in SOLUTION.values()]}).to_csv(
        data / "test_solution.csv", index=False)
    folds = root / "folds.csv"
    pd.DataFrame({"id": TRAIN, "landmark_id": TRAIN_LM, "label": [{10: 0, 20: 1, 30: 2}[v] for v in TRAIN_LM],
                  "fold": [i % 2 for i in range(11)]}).to_csv(folds, index=False)

    run = root / "runs" / "expA" / "fold0"
    run.mkdir(parents=True)
    pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [2.0, 1.5, 1.2], "val_loss": [2.1, 1.7, 1.6],
                  "val_acc": [0.2, 0.4, 0.5], "val_gap": [0.1, 0.35, 0.3]}).to_csv(run / "metrics.csv", index=False)

    train_emb = rng.normal(size=(11, 8)).astype(np.float32)
    train_emb /= np.linalg.norm(train_emb, axis=1, keepdims=True)
    test_emb = rng.normal(size=(6, 8)).astype(np.float32)
    test_emb[0] = train_emb[3]                                  # t1's nearest training image: TRAIN[3], cos 1
    test_emb /= np.linalg.norm(test_emb, axis=1, keepdims=True)
    labels = np.array([[lab, -1] for lab, _ in TOP1])
    scores = np.array([[s, 0.0] for _, s in TOP1])
    sub = root / "predictions" / "expA"
    save_predictions(Predictions(TEST, labels, scores, test_emb), sub / "test_fold0.npz")
    save_predictions(Predictions(TRAIN, np.array(TRAIN_LM)[:, None], np.ones((11, 1)), train_emb),
                     sub / "train_fold0.npz")
    filt = scores.copy()
    filt[1, 0] = 0.1                                            # t2 demoted
    flab = labels.copy()
    flab[4, 0] = -1                                             # t5 rejected as non-landmark
    save_predictions(Predictions(TEST, flab, np.where(flab >= 0, filt, 0)), root / "ensembles" / "max_filtered.npz")
    save_predictions(Predictions(TEST, labels, scores), root / "ensembles" / "max.npz")
    return data, folds


def _build(root, **kw):
    data, folds = _write_inputs(root) if not (root / "folds.csv").exists() else (root / "data", root / "folds.csv")
    args = dict(runs_dir=root / "runs", predictions_dir=root / "predictions", data_dir=data,
                solution=data / "test_solution.csv", folds=folds, gallery=6, rare_below=4)
    args.update(kw)
    return build_report(root / "report" / "index.html", **args).read_text()


def test_score_by_bucket_numbers():
    pred = Predictions(TEST, [[lab] for lab, _ in TOP1], [[s] for _, s in TOP1])
    truth = {k: tuple(v) for k, v in SOLUTION.items()}
    df = score_by_bucket(pred, truth, {10: 6, 20: 2, 30: 3}, threshold=4).set_index("bucket")
    # all: t5 x(.95), t1 ok 1/2, t2 x, t4 x, t3 ok 2/5 -> (0.5 + 0.4) / 4 landmark images
    assert df.loc["all", "GAP"] == pytest.approx(0.225)
    # frequent (class 10): t1 ok 1/1, t2 x -> 1 / 2; rare (20, 30): t4 x, t3 ok 1/2 -> 0.5 / 2
    assert df.loc["frequent", "GAP"] == pytest.approx(0.5)
    assert df.loc["rare", "GAP"] == pytest.approx(0.25)
    assert df["images"].tolist() == [6, 2, 2] and df["classes"].tolist() == [3, 1, 2]
    assert df["top-1 acc"].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert (df.loc["all", "sensitivity"], df.loc["all", "specificity"]) == pytest.approx((1.0, 0.5))


def test_gallery_picks_mix_landmarks_and_non_landmarks_spread_by_score():
    pred = Predictions(TEST, [[lab] for lab, _ in TOP1], [[s] for _, s in TOP1])
    truth = {k: tuple(v) for k, v in SOLUTION.items()}
    # landmark rows by score: t1 .9, t2 .8, t4 .75, t3 .7 -> ends t1, t3; non-landmarks t5 .95, t6 0
    assert gallery_picks(pred, truth, 4).tolist() == [4, 0, 2, 5]
    assert gallery_picks(pred, truth, 3).tolist() == [4, 0, 2]
    assert gallery_picks(pred, {}, 2).tolist() == [4, 5]          # no truth: best and worst score


def test_rare_threshold_mailru_and_small_data():
    assert rare_threshold(pd.Series([150, 120, 40]))[0] == 100
    t, why = rare_threshold(pd.Series([6, 2, 3]))                 # all below 100: median count
    assert t == 3 and "median" in why


def test_report_content(tmp_path):
    page = _build(tmp_path)
    for title in ("Learning curves", "GAP by class frequency", "nearest training images", "Ensemble comparison"):
        assert title in page
    # learning curves: one plot and the best val_gap 0.35 at epoch 1
    curves = _section(page, "curves")
    assert curves.count("data:image/png;base64,") == 1 and "0.3500" in curves and "<td>1</td>" in curves
    # buckets: test_fold0 and ensembles/max score 0.2250 overall, 0.5000 frequent, 0.2500 rare
    buckets = _section(page, "buckets")
    assert buckets.count("0.2250") == 2 and "0.2500" in buckets and "fewer than 4 training images" in buckets
    # gallery: 6 rows of 5 neighbours; t1 first neighbour is TRAIN[3] at cos 1.000; filter verdicts
    gallery = _section(page, "gallery")
    rows = re.findall(r"<tr class='gallery-row'>(.*?)</tr>", gallery, re.S)
    assert len(rows) == 6 and all(r.count("class='nb") == 5 for r in rows)
    t1 = next(r for r in rows if TEST[0] in r)
    assert "cos 1.000" in t1.split("class='nb")[1] and "pred ok" in t1
    assert "rejected (no landmark)" in next(r for r in rows if TEST[4] in r)
    assert "no prediction" in next(r for r in rows if TEST[5] in r)
    assert "demoted to 0.100" in next(r for r in rows if TEST[1] in r)
    assert gallery.count("data:image/png;base64,") == 6 * 6
    assert str(tmp_path / "predictions") in page
    # ensembles scored on the solution (no --comparison): the max row
    ens = _section(page, "ensembles")
    assert "<td>max</td><td>6</td><td>0.2250</td><td>0.5000</td><td>1.0000</td><td>0.5000</td>" in ens
    # embedded images are real PNGs
    first = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1)
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_comparison_json(tmp_path):
    _write_inputs(tmp_path)
    comp = tmp_path / "comparison.json"
    comp.write_text(json.dumps({"max": {"gap": 0.5}, "weighted": {"gap": 0.61, "acc": 0.7}}))
    ens = _section(_build(tmp_path, comparison=comp), "ensembles")
    assert "<td>weighted</td><td>0.6100</td><td>0.7000</td>" in ens and "<td>max</td><td>0.5000</td>" in ens


def test_report_without_inputs_is_an_error_and_degrades_with_few(tmp_path):
    with pytest.raises(KitError, match="nothing to report"):
        build_report(tmp_path / "r.html", runs_dir=tmp_path / "none", predictions_dir=tmp_path / "none")
    assert not (tmp_path / "r.html").exists()
    (tmp_path / "subs" / "exp").mkdir(parents=True)   # an experiment with nothing in it yet
    page = build_report(tmp_path / "r.html", runs_dir=tmp_path / "none", predictions_dir=tmp_path / "subs").read_text()
    assert page.count('class="note"') == 4 and "data:image" not in page
    assert "No learning curves" in page and "pass --labels" in page and "No gallery" in page
    with pytest.raises(KitError, match="file not found"):
        build_report(tmp_path / "r.html", solution=tmp_path / "missing.csv")
