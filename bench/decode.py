"""Bench: phone-size photos decoded at the scale kit needs (kit.images.read_image's min_side) vs at full size.

    .venv/bin/python bench/decode.py        # -> bench/results/decode.json (about 2 minutes here)

Pairs of training photos of the same landmark from ../shared/data (one pair per class) are enlarged to a
phone's 4032 px (JPEG quality 92, with sensor-like noise so the files are phone-sized) in a temp folder.
For kit's two readers of images, seconds per image with the full decode vs the reduced one, and how much
the result moves:
  network input  (`kit predict` / `kit train`: LandmarkDataset + the eval transform, 224 and 384 px):
                 cosine between the packaged lite0 GeM embeddings of the two decodes, and of each to the
                 embedding of the full decode shrunk by area averaging (the alias-free reference)
  local features (`kit rerank`, `kit filter sift`: RootSIFT 512 px, 1000 keypoints): RANSAC inliers of each
                 same-landmark pair with kit rerank's matching settings, from either decode
If ../shared/data is absent (a fresh clone) it says so and exits 0.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kit.atomic import write_json  # noqa: E402

DEFAULT_SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "results" / "decode.json"


def phone_photos(shared: Path, folder: Path, pairs: int, side: int = 4032, seed: int = 0) -> list[tuple[Path, Path]]:
    """The first two training photos of each of the first `pairs` classes, enlarged to `side` px (long side),
    written as folder/train/a/b/c/<id>.jpg (GLDv2 layout, 16-hex ids)."""
    import hashlib

    import cv2
    import pandas as pd

    from kit.layout import image_path

    labels = pd.read_csv(shared / "oxford_paris" / "labels.csv", dtype={"id": str})
    train = labels[(labels["split"] == "train") & labels["landmark_id"].notna()].sort_values(["landmark_id", "id"])
    rng = np.random.default_rng(seed)
    out = []
    for _, rows in list(train.groupby("landmark_id"))[:pairs]:
        if len(rows) < 2:
            continue
        pair = []
        for image_id in rows["id"][:2]:
            img = cv2.imread(str(shared / "oxford_paris" / "images" / f"{image_id}.jpg"))
            h, w = img.shape[:2]
            s = side / max(h, w)
            big = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
            big = cv2.add(big, rng.integers(0, 12, big.shape, dtype=np.uint8))
            path = image_path(folder, "train", hashlib.sha1(image_id.encode()).hexdigest()[:16])
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
            pair.append(path)
        out.append(tuple(pair))
    return out


def per_image(fn, items, repeat: int) -> tuple[float, list]:
    """Best of `repeat` passes, seconds per item, and the last pass's outputs."""
    best, res = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        res = [fn(x) for x in items]
        best = min(best, (time.perf_counter() - t) / len(items))
    return best, res


def network_rows(folder: Path, paths: list[Path], sizes, repeat: int) -> list[dict]:
    import cv2
    import pandas as pd
    import torch

    from kit.data.augment import build_transforms
    from kit.data.dataset import LandmarkDataset
    from kit.images import read_image
    from kit.models.backbones import backbone_mean_std, create_backbone
    from kit.models.layers import GeM

    name = "tf_efficientnet_lite0"
    net = create_backbone(name).eval()
    pool = GeM()
    df = pd.DataFrame({"id": [p.stem for p in paths], "label": 0})
    rows = []
    for size in sizes:
        tf = build_transforms("none", size, False, *backbone_mean_std(name))
        timings, tensors = {}, {}
        for key, image_size in (("full", 0), ("reduced", size)):  # image_size 0: the full-size decode
            ds = LandmarkDataset(df, folder, tf, image_size=image_size)
            timings[key], tensors[key] = per_image(lambda i, ds=ds: ds[i]["image"], range(len(paths)), repeat)
        # reference: the full decode shrunk with area averaging (no aliasing), the input a careful user would make
        area = [cv2.resize(read_image(ds_path), (size, size), interpolation=cv2.INTER_AREA) for ds_path in paths]
        tensors["area"] = [tf(image=a)["image"] for a in area]
        with torch.inference_mode():
            emb = {k: torch.nn.functional.normalize(pool(net(torch.stack(v))).flatten(1), dim=1) for k, v in tensors.items()}
        cos = (emb["full"] * emb["reduced"]).sum(1).numpy()
        to_area = {k: (emb[k] * emb["area"]).sum(1).numpy() for k in ("full", "reduced")}
        diff = torch.stack([(a - b).abs().mean() for a, b in zip(tensors["full"], tensors["reduced"])]).numpy()
        rows.append({"what": f"network input {size} px (decode + resize + normalise)", "images": len(paths),
                     "s_per_image_full": round(timings["full"], 4), "s_per_image_reduced": round(timings["reduced"], 4),
                     "speedup": round(timings["full"] / timings["reduced"], 2),
                     "embedding_cosine_min": round(float(cos.min()), 4), "embedding_cosine_mean": round(float(cos.mean()), 4),
                     "cosine_to_area_resize_mean_full": round(float(to_area["full"].mean()), 4),
                     "cosine_to_area_resize_mean_reduced": round(float(to_area["reduced"].mean()), 4),
                     "input_mean_abs_diff_normalised": round(float(diff.mean()), 4)})
        print(rows[-1], flush=True)
    return rows


def sift_row(pairs: list[tuple[Path, Path]], repeat: int) -> dict:
    from kit.inference.rerank import RerankConfig
    from kit.images import decode_image
    from kit.localfeatures.matching import count_inliers
    from kit.localfeatures.sift import SiftExtractor

    ext = SiftExtractor(image_size=512, max_keypoints=1000)
    paths = [p for pair in pairs for p in pair]
    timings, feats = {}, {}
    for key, side in (("full", 0), ("reduced", ext.image_size)):   # `cached_features` passes image_size
        timings[key], out = per_image(lambda p, side=side: ext.extract([decode_image(p, min_side=side)])[0], paths, repeat)
        feats[key] = dict(zip(paths, out))
    c = RerankConfig()
    kw = dict(ratio=c.ratio, transform=c.transform, threshold=c.ransac_threshold, robust=c.robust)
    inl = {k: [count_inliers(f[a], f[b], **kw) for a, b in pairs] for k, f in feats.items()}
    row = {"what": "RootSIFT 512 px, 1000 keypoints (decode + extract)", "images": len(paths),
           "s_per_image_full": round(timings["full"], 4), "s_per_image_reduced": round(timings["reduced"], 4),
           "speedup": round(timings["full"] / timings["reduced"], 2),
           "pair_inliers_full": inl["full"], "pair_inliers_reduced": inl["reduced"],
           "pairs_verified_full": sum(i >= c.min_inliers for i in inl["full"]),
           "pairs_verified_reduced": sum(i >= c.min_inliers for i in inl["reduced"])}
    print(row, flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    p.add_argument("--pairs", type=int, default=12, help="classes to take a same-landmark pair from (those with 2+ photos)")
    p.add_argument("--repeat", type=int, default=3, help="passes per timing (the best is kept)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if not (args.shared / "oxford_paris" / "labels.csv").is_file():
        print(f"{args.shared}: no oxford_paris/labels.csv (no real photos here): nothing to measure")
        return 0
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = phone_photos(args.shared, Path(tmp), args.pairs)
        paths = [p for pair in pairs for p in pair]
        mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        print(f"{len(paths)} photos, 4032 px long side, {mb:.1f} MB per file on average", flush=True)
        rows = network_rows(Path(tmp), paths, (224, 384), args.repeat) + [sift_row(pairs, args.repeat)]
    write_json({"command": "python bench/decode.py", "machine": platform.processor() or platform.machine(),
                          "threads": 1, "photo_long_side": 4032, "mean_file_mb": round(mb, 2), "rows": rows}, args.out)
    print(f"-> {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
