"""The synthetic GLDv2-layout data set: sizes, ids, splits, rendering, CSVs; pixels depend on (seed, split, index) only."""
from __future__ import annotations

import functools
import json
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from kit.atomic import atomic_path, write_csv, write_json
from kit.errors import KitError
from kit.layout import image_path
from kit.progress import progress as progress_bar
from kit.synth.scenes import SCENES
from kit.synth.structures import make_structure
from kit.synth.views import SUPERSAMPLE, photometric, render_view

SPLIT_CODE = {"train": 1, "test": 2, "distractors": 3}
LANDMARK_ID_RANGE = 200_000       # landmark ids are sparse ints, like GLDv2's 0..203093
DISTRACTOR_BASE = 1_000_000       # unseen structures (non-landmarks) get ids from here
NONLANDMARK_KINDS = {"texture": 0.15, "objects": 0.15, "face": 0.15, "indoor": 0.2, "street": 0.15, "structure": 0.2}
NOISE_KINDS = ("texture", "objects", "face", "indoor", "street")


def long_tail_counts(total: int, classes: int, exponent: float = 1.1, min_count: int = 2) -> np.ndarray:
    """Images per class by frequency rank: min_count each plus a Zipf(exponent) share of the rest."""
    if classes < 1 or total < min_count * classes:
        raise KitError(f"synth: --images {total} is too few for {classes} classes (need >= {min_count * classes})")
    w = np.arange(1, classes + 1, dtype=np.float64) ** -exponent
    raw = w / w.sum() * (total - min_count * classes) + min_count
    counts = np.floor(raw).astype(np.int64)
    extra = total - int(counts.sum())
    counts[np.argsort(-(raw - counts), kind="stable")[:extra]] += 1
    return counts


def make_ids(rng: np.random.Generator, n: int) -> list[str]:
    """n unique 16-hex-digit ids (GLDv2 style), deterministic from rng."""
    out: list[str] = []
    while len(out) < n:  # first occurrences kept, in draw order
        drawn = rng.integers(0, 2**63, n - len(out), dtype=np.int64)
        out = list(dict.fromkeys(out + [f"{int(v):016x}" for v in drawn]))
    return out


@functools.lru_cache(maxsize=512)
def _structure(class_key: int, family: int, seed: int, size: int):
    return make_structure(class_key, seed, size, return_mask=True, family=family)


def render_image(seed: int, split: str, index: int, size: int, class_key: int | None, family: int | None,
                 scene: str | None) -> np.ndarray:
    """The size x size RGB image number `index` of `split`: a view of structure `class_key` or a scene."""
    rng = np.random.default_rng([seed, SPLIT_CODE[split], index])
    if class_key is not None:
        structure, mask = _structure(int(class_key), family, seed, SUPERSAMPLE * size)
        return render_view(structure, rng, size, mask)[0]
    big = SCENES[scene](rng, SUPERSAMPLE * size)
    return photometric(cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA), rng)


def _render_chunk(out_dir: str, seed: int, size: int, quality: int, jobs: list[tuple]) -> int:
    """Draw the images of `jobs` (one worker's share) and write each as a JPEG, atomically."""
    cv2.setNumThreads(1)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for split, index, image_id, class_key, family, scene in jobs:
        rgb = render_image(seed, split, index, size, class_key, family, scene)
        path = image_path(out_dir, split, image_id)
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[..., ::-1]), jpeg):
                raise KitError(f"{path}: JPEG encoding failed")
    return len(jobs)


def _check(params: dict) -> None:
    """KitError naming the first setting of `params` outside its range."""
    rules = {"classes": (lambda v: v >= 1, "must be >= 1"), "test_images": (lambda v: v >= 0, "must be >= 0"),
             "size": (lambda v: v >= 32, "must be >= 32"), "zipf": (lambda v: v >= 0, "must be >= 0"),
             "nonlandmark_frac": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
             "train_noise": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
             "family_frac": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
             "quality": (lambda v: 1 <= v <= 100, "must be in 1..100")}
    for name, value in params.items():
        if name in rules and not rules[name][0](value):
            what = "JPEG quality" if name == "quality" else "--" + name.replace("_", "-")
            raise KitError(f"synth: {what} {rules[name][1]} (got {value})")


def plan(classes: int = 60, images: int = 3000, test_images: int = 600, nonlandmark_frac: float = 0.8,
         train_noise: float = 0.05, zipf: float = 1.1, seed: int = 0,
         family_frac: float = 0.6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every image decided without drawing it: (train, test) frames of id, landmark_id, class_key, family, scene."""
    rng = np.random.default_rng([seed, 0])
    landmark_ids = np.sort(rng.choice(LANDMARK_ID_RANGE, classes, replace=False))
    counts = np.empty(classes, np.int64)
    counts[rng.permutation(classes)] = long_tail_counts(images, classes, zipf)
    ids = make_ids(rng, images + test_images)

    train_lm = np.repeat(landmark_ids, counts)
    noise = np.zeros(images, bool)
    noise[rng.choice(images, int(round(train_noise * images)), replace=False)] = True
    train = pd.DataFrame({"id": ids[:images], "landmark_id": train_lm, "noise": noise})
    train["class_key"] = np.where(noise, -1, train_lm)
    train["scene"] = np.where(noise, rng.choice(NOISE_KINDS, images), "")
    frng = np.random.default_rng([seed, 3])
    n_families = max(1, int(round(family_frac * classes)))
    family_of = dict(zip(landmark_ids.tolist(), frng.integers(0, n_families, classes).tolist()))
    train["family"] = np.where(noise, -1, [family_of[k] for k in train_lm])
    train = train.iloc[rng.permutation(images)].reset_index(drop=True)

    n_nl = int(round(nonlandmark_frac * test_images))
    p = np.sqrt(counts) / np.sqrt(counts).sum()
    test_lm = np.concatenate([np.full(n_nl, -1), rng.choice(landmark_ids, test_images - n_nl, p=p)])
    kinds = list(NONLANDMARK_KINDS)
    scene = np.concatenate([rng.choice(kinds, n_nl, p=list(NONLANDMARK_KINDS.values())), np.full(test_images - n_nl, "")])
    n_distractors = max(5, classes // 2)
    distractor = DISTRACTOR_BASE + rng.integers(0, n_distractors, test_images)
    class_key = np.where(test_lm >= 0, test_lm, np.where(scene == "structure", distractor, -1))
    family = np.where(test_lm >= 0, [family_of.get(k, -1) for k in test_lm.tolist()],
                      np.where(scene == "structure", frng.integers(0, n_families, test_images), -1))
    test = pd.DataFrame({"id": ids[images:], "landmark_id": test_lm, "class_key": class_key, "family": family,
                         "scene": np.where(scene == "structure", "", scene)})
    test = test.iloc[rng.permutation(test_images)].reset_index(drop=True)
    return train, test


def plan_distractors(n: int, classes: int, seed: int, family_frac: float = 0.6) -> pd.DataFrame:
    """Extra non-landmark images (scenes, unseen structures) to fit filter thresholds without touching the test set."""
    rng = np.random.default_rng([seed, 5])
    scene = rng.choice(list(NONLANDMARK_KINDS), n, p=list(NONLANDMARK_KINDS.values()))
    # unseen structures disjoint from the test set's (those start at DISTRACTOR_BASE)
    key = DISTRACTOR_BASE + 500_000 + rng.integers(0, max(5, classes // 2), n)
    n_families = max(1, int(round(family_frac * classes)))
    return pd.DataFrame({"id": make_ids(rng, n), "landmark_id": -1,
                         "class_key": np.where(scene == "structure", key, -1),
                         "family": np.where(scene == "structure", rng.integers(0, n_families, n), -1),
                         "scene": np.where(scene == "structure", "", scene)})


def _jobs(frame: pd.DataFrame, split: str) -> list[tuple]:
    return [(split, i, r.id, None if r.class_key < 0 else int(r.class_key), int(r.family), r.scene or None)
            for i, r in enumerate(frame.itertuples(index=False))]


def generate(out_dir: str | os.PathLike, classes: int = 60, images: int = 3000, test_images: int = 600,
             size: int = 128, nonlandmark_frac: float = 0.8, train_noise: float = 0.05, zipf: float = 1.1,
             seed: int = 0, family_frac: float = 0.6, workers: int | None = None, quality: int = 90, force: bool = True,
             progress: bool = True, distractors: int = 200) -> dict:
    """Write the synthetic data set (CSVs, images, synth.json) to out_dir -> a summary; force=False reuses a match."""
    params = dict(classes=classes, images=images, test_images=test_images, size=size, nonlandmark_frac=nonlandmark_frac,
                  train_noise=train_noise, zipf=zipf, seed=seed, family_frac=family_frac, quality=quality,
                  distractors=distractors)
    _check(params)
    out = Path(out_dir)
    meta = out / "synth.json"
    if not force and meta.is_file():
        old = json.loads(meta.read_text())
        if old.get("params") == params and all((out / f).is_file() for f in ("train.csv", "test_solution.csv")):
            return {**old["summary"], "reused": True}
    t0 = time.perf_counter()
    train, test = plan(classes, images, test_images, nonlandmark_frac, train_noise, zipf, seed, family_frac)
    extra = plan_distractors(distractors, classes, seed, family_frac)
    workers = workers or min(os.cpu_count() or 1, 8)
    render_all(out, seed, size, quality, _jobs(train, "train") + _jobs(test, "test") + _jobs(extra, "distractors"),
               workers, progress)
    write_tables(out, train, test, extra)
    per_class = train.landmark_id.value_counts()
    summary = {"out_dir": str(out), "classes": classes, "train_images": images,
               "train_noise_images": int(train.noise.sum()), "test_images": test_images,
               "test_landmark_images": int((test.landmark_id >= 0).sum()),
               "test_nonlandmark_images": int((test.landmark_id < 0).sum()), "distractor_images": distractors,
               "size": size, "seed": seed, "per_class_max": int(per_class.max()),
               "per_class_median": float(per_class.median()), "per_class_min": int(per_class.min()),
               "workers": workers, "seconds": round(time.perf_counter() - t0, 2)}
    write_json({"params": params, "summary": summary}, meta)
    return summary


def summary_line(s: dict) -> str:
    """One line for the CLI: counts, long-tail shape and timing."""
    return (f"synth: {s['classes']} classes, {s['train_images']} train images (per class max {s['per_class_max']} / "
            f"median {s['per_class_median']:g} / min {s['per_class_min']}, {s['train_noise_images']} noisy), "
            f"{s['test_images']} test images ({s['test_nonlandmark_images']} non-landmark) at {s['size']} px "
            f"-> {s['out_dir']} in {s['seconds']:.1f} s" + (" (reused)" if s.get("reused") else ""))


def render_all(out: Path, seed: int, size: int, quality: int, jobs: list, workers: int, progress: bool) -> None:
    """Render and save every image of `jobs` in `workers` processes, in chunks (about 8 per worker)."""
    chunk = max(8, math.ceil(len(jobs) / (workers * 8)))
    run = Parallel(n_jobs=workers, return_as="generator_unordered")(
        delayed(_render_chunk)(str(out), seed, size, quality, jobs[i:i + chunk]) for i in range(0, len(jobs), chunk))
    with progress_bar(total=len(jobs), desc="synth", unit="img", disable=not progress, leave=False) as bar:
        for n in run:
            bar.update(n)


def write_tables(out: Path, train: pd.DataFrame, test: pd.DataFrame, extra: pd.DataFrame) -> None:
    """train.csv, train_clean.csv, sample_submission.csv, distractors.csv and test_solution.csv."""
    url = "https://synth.invalid/{}/".format
    write_csv(pd.DataFrame({"id": train.id, "url": url("train") + train.id + ".jpg", "landmark_id": train.landmark_id}),
              out / "train.csv")
    clean = train[~train.noise].groupby("landmark_id").id.agg(" ".join).reset_index(name="images")
    write_csv(clean, out / "train_clean.csv")
    write_csv(pd.DataFrame({"id": test.id, "landmarks": ""}), out / "sample_submission.csv")
    write_csv(extra[["id"]], out / "distractors.csv")
    solution = np.where(test.landmark_id >= 0, test.landmark_id.astype(str), "")
    write_csv(pd.DataFrame({"id": test.id, "landmarks": solution}), out / "test_solution.csv")
