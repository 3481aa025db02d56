"""kit.data.dataset: folds CSV checks, missing/corrupt image handling, loaders whose order is a function of (seed, epoch)."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from kit.config import load_config
from kit.data.dataset import LandmarkDataset, collate, make_loaders, read_folds, set_epoch, split_fold
from kit.errors import KitError
from kit.images import read_image
from kit.layout import image_path

torch.set_num_threads(1)


def make_gldv2(root, classes=(101, 205, 309), per_class=8, size=32, folds=2, seed=0):
    """Tiny GLDv2 layout: one flat noisy colour per class (learnable in a few steps), folds CSV."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, landmark in enumerate(classes):
        colour = rng.integers(0, 256, 3)
        for j in range(per_class):
            iid = f"{rng.integers(0, 16**15):016x}"
            img = np.clip(colour + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            path = image_path(root, "train", iid)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img)
            rows.append((iid, landmark, label, j % folds))
    df = pd.DataFrame(rows, columns=["id", "landmark_id", "label", "fold"])
    df.to_csv(root / "folds.csv", index=False)
    return df


def data_cfg(root, *extra):
    return load_config(None, [f"data.data_dir={root}", f"data.folds_csv={root / 'folds.csv'}", "data.image_size=32",
                              "data.batch_size=4", "data.num_workers=0", *extra])


def test_split_fold_rows_labels_and_counts(tmp_path):
    df = make_gldv2(tmp_path, per_class=6)
    df.loc[0, "fold"] = -1  # holdout row: in neither part
    df.to_csv(tmp_path / "folds.csv", index=False)
    split = split_fold(data_cfg(tmp_path), 1)
    assert split.label_map == [101, 205, 309]
    assert len(split.val) == 9 and set(split.val["fold"]) == {1}
    assert len(split.train) == 8 and set(split.train["fold"]) == {0}
    assert split.class_counts == [2, 3, 3]  # label 0 lost its holdout row
    assert split.missing == 0


def test_missing_and_corrupt_images_are_skipped_and_counted(tmp_path, caplog):
    df = make_gldv2(tmp_path, per_class=4)
    gone = [image_path(tmp_path, "train", i) for i in df["id"][:3]]
    for p in gone:
        p.unlink()
    broken = image_path(tmp_path, "train", df["id"][5])
    broken.write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING, logger="kit.data.dataset"):
        split = split_fold(data_cfg(tmp_path), 0)
    assert split.missing == 3
    assert len(split.train) + len(split.val) == 12 - 3
    assert "skipping 3 missing image(s)" in caplog.text and str(gone[0]) in caplog.text

    loaders = make_loaders(data_cfg(tmp_path, "data.batch_size=16"), 0, split=split)
    batches = [b for b in loaders.val]  # broken image (row 5, fold 1) is in fold 0's training part
    assert sum(len(b["id"]) for b in batches) == len(split.val)
    ds = loaders.train.dataset
    k = ds.ids.index(df["id"][5])
    with caplog.at_level(logging.WARNING, logger="kit.data.dataset"):
        assert ds[k] == {"skipped": df["id"][5]}
    assert str(broken) in caplog.text
    batch = collate([ds[k], ds[0 if k else 1]])
    assert batch["image"].shape == (1, 3, 32, 32) and batch["skipped"] == [df["id"][5]]
    assert collate([ds[k], ds[k]]) == {"skipped": [df["id"][5]] * 2}


def test_strict_raises_on_missing_and_corrupt(tmp_path):
    df = make_gldv2(tmp_path, per_class=4)
    image_path(tmp_path, "train", df["id"][0]).unlink()
    with pytest.raises(KitError, match=r"1 image\(s\) missing"):
        split_fold(data_cfg(tmp_path, "data.strict=true"), 0)
    make_gldv2(tmp_path, per_class=4)  # restore
    image_path(tmp_path, "train", df["id"][1]).write_bytes(b"\xff\xd8junk")
    ds = LandmarkDataset(df, tmp_path, lambda image: {"image": image}, strict=True)
    with pytest.raises(KitError, match=r"0f694dc151800e2f\.jpg: not a readable image|not a readable image"):
        ds[1]


def test_large_jpegs_are_decoded_at_the_scale_the_caller_needs(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    jpg, png = tmp_path / "a.jpg", tmp_path / "a.png"
    cv2.imwrite(str(jpg), img)
    cv2.imwrite(str(png), img)
    for min_side, shape in [(0, (768, 1024)), (96, (96, 128)), (100, (192, 256)), (384, (384, 512)), (400, (768, 1024))]:
        assert read_image(jpg, min_side=min_side).shape[:2] == shape, min_side
    assert read_image(png, min_side=96).shape[:2] == (768, 1024)  # only JPEGs scale while decoding
    df = pd.DataFrame({"id": ["0123456789abcdef"], "label": [0]})
    path = image_path(tmp_path, "train", df["id"][0])
    path.parent.mkdir(parents=True)
    path.write_bytes(jpg.read_bytes())
    keep = lambda image: {"image": image}  # noqa: E731
    assert LandmarkDataset(df, tmp_path, keep)[0]["image"].shape[:2] == (768, 1024)
    assert LandmarkDataset(df, tmp_path, keep, image_size=64)[0]["image"].shape[:2] == (192, 256)  # >= 2 x 64


def test_bad_folds_inputs(tmp_path):
    with pytest.raises(KitError, match="file not found"):
        read_folds(tmp_path / "nope.csv", 0)
    df = make_gldv2(tmp_path, per_class=2)
    with pytest.raises(KitError, match=r"fold 5 has no rows \(folds present: \[0, 1\]\)"):
        read_folds(tmp_path / "folds.csv", 5)
    df.assign(label=df["label"] * 2).to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(KitError, match="contiguous"):
        read_folds(tmp_path / "gap.csv", 0)
    df.assign(fold=df["fold"].astype(object).where(df.index != 3, "x")).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(KitError, match=r"row 5: column fold is not an integer \('x'\)"):
        read_folds(tmp_path / "bad.csv", 0)
    df.drop(columns="fold").to_csv(tmp_path / "nofold.csv", index=False)
    with pytest.raises(KitError, match="missing column"):
        read_folds(tmp_path / "nofold.csv", 0)


def test_order_and_augmentation_depend_only_on_seed_and_epoch(tmp_path):
    make_gldv2(tmp_path, per_class=8)
    cfg = data_cfg(tmp_path, "data.augment=pipeline1")

    def epoch_batches(loader, epoch):
        set_epoch(loader, epoch)
        return [(b["id"], b["image"]) for b in loader]

    a = epoch_batches(make_loaders(cfg, 0).train, 3)
    b = epoch_batches(make_loaders(cfg, 0).train, 3)  # fresh loaders: as after a resume
    c = epoch_batches(make_loaders(cfg, 0).train, 4)
    assert len(a) == 3  # 12 training rows, batch 4, drop_last
    assert [x[0] for x in a] == [x[0] for x in b]
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert [x[0] for x in a] != [x[0] for x in c]

    # Two DDP ranks with half the batch each see exactly the single process's global batches.
    shards = [epoch_batches(make_loaders(cfg, 0, world_size=2, rank=r).train, 3) for r in (0, 1)]
    for step, (ids, images) in enumerate(a):
        merged = dict(zip(shards[0][step][0] + shards[1][step][0],
                          torch.cat([shards[0][step][1], shards[1][step][1]])))
        assert sorted(merged) == sorted(ids)
        assert all(torch.equal(merged[i], img) for i, img in zip(ids, images))


def test_loader_workers_start_after_opencv_used_threads(tmp_path):
    """Regression: workers forked after the parent used OpenCV's thread pool must not deadlock."""
    import subprocess
    import sys
    import textwrap

    make_gldv2(tmp_path, per_class=4)
    script = textwrap.dedent(f"""
        import numpy as np, cv2
        from kit.config import load_config
        from kit.data.dataset import make_loaders
        big = np.random.rand(3000, 3000).astype(np.float32)
        for _ in range(3):
            cv2.GaussianBlur(cv2.resize(big, (2500, 2500)), (31, 31), 5)   # starts OpenCV's pool
        cfg = load_config(None, ["data.data_dir={tmp_path}", "data.folds_csv={tmp_path / 'folds.csv'}",
                                 "data.image_size=32", "data.batch_size=4", "data.num_workers=2", "device=cpu"])
        loaders = make_loaders(cfg, 0)
        print(sum(len(b["label"]) for b in loaders.train) + sum(len(b["label"]) for b in loaders.val))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) > 0
