"""Build a GLDv2-layout view of ../shared/data (Oxford5k/Paris6k landmarks + Caltech-101 non-landmarks).

`build_layout(shared, out)` writes, under `out` (outside the repo or in an ignored folder; the images
are symlinked, or copied with link=False, never added to the repo):
  train.csv (id,url,landmark_id)            the `train` rows of oxford_paris/labels.csv
  train/a/b/c/<id>.jpg
  test/a/b/c/<id>.jpg                       every `query` row (labelled and non-landmark) + half the distractors
  sample_submission.csv, test_solution.csv  (id,landmarks; empty = non-landmark or distractor)
  distractors.csv + distractors/a/b/c/<id>.jpg   the other half of the distractors: non-landmark images
                                            for FITTING filter thresholds without touching the test set
  id_map.csv (id,original,role,landmark_id,source)   kit id -> original file name
Ids are the first 16 hex digits of sha1("<dataset>/<original id>"): GLDv2-like and stable across runs.
The distractor halves are fixed: within each Caltech category (sorted by id), every other image.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from kit.errors import KitError
from kit.atomic import write_csv, write_json
from kit.csvfiles import read_csv
from kit.layout import image_path


def hex_id(name: str) -> str:
    """16 lowercase hex digits, like a GLDv2 id, stable for a given name."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:16]


def split_distractors(labels: pd.DataFrame) -> np.ndarray:
    """True for the distractors kept for fitting filters: every other image of each source category."""
    order = labels.sort_values(["source", "id"], kind="stable")
    rank = order.groupby("source", sort=False).cumcount().to_numpy()
    fit = pd.Series(rank % 2 == 0, index=order.index)
    return fit.reindex(labels.index).to_numpy(bool)


def plan_layout(shared: str | os.PathLike, landmarks: str | None = None) -> pd.DataFrame:
    """One row per image: id, original, role (train | test | distractors), landmark_id (-1 none), source path.
    `landmarks`: keep only the classes whose name (classes.csv) starts with it, e.g. "ox_" (a smaller second
    real set for a transfer check); every non-landmark query and distractor stays."""
    shared = Path(shared)
    op = read_csv(shared / "oxford_paris" / "labels.csv", ("id", "landmark_id", "split"), dtype={"id": str})
    if landmarks:
        names = read_csv(shared / "oxford_paris" / "classes.csv", ("landmark_id", "name"))
        kept = set(names.loc[names["name"].astype(str).str.startswith(landmarks), "landmark_id"].astype(int))
        if not kept:
            raise KitError(f"{shared}/oxford_paris/classes.csv: no class name starts with {landmarks!r}")
        lid = pd.to_numeric(op["landmark_id"], errors="coerce")
        op = op[lid.isna() | lid.isin(kept)].reset_index(drop=True)
    bad = ~op["split"].isin(["train", "query"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise KitError(f"{shared}/oxford_paris/labels.csv: row {i + 1}: split {op['split'].iloc[i]!r} (valid: train, query)")
    lm = pd.to_numeric(op["landmark_id"], errors="coerce").fillna(-1).astype(np.int64)
    unlabelled_train = (op["split"] == "train") & (lm < 0)
    if unlabelled_train.any():
        raise KitError(f"{shared}/oxford_paris/labels.csv: train image {op['id'][unlabelled_train].iloc[0]} has no landmark_id")
    landmarks = pd.DataFrame({
        "original": op["id"], "dataset": "oxford_paris",
        "role": np.where(op["split"] == "train", "train", "test"), "landmark_id": lm,
        "source": [str(shared / "oxford_paris" / "images" / f"{i}.jpg") for i in op["id"]]})
    dis = read_csv(shared / "distractors" / "labels.csv", ("id", "source"), dtype={"id": str})
    distractors = pd.DataFrame({
        "original": dis["id"], "dataset": "distractors",
        "role": np.where(split_distractors(dis), "distractors", "test"), "landmark_id": -1,
        "source": [str(shared / "distractors" / "images" / f"{i}.jpg") for i in dis["id"]]})
    plan = pd.concat([landmarks, distractors], ignore_index=True)
    plan.insert(0, "id", [hex_id(f"{d}/{o}") for d, o in zip(plan["dataset"], plan["original"])])
    dup = plan["id"].duplicated()
    if dup.any():
        raise KitError(f"{shared}: id collision for {plan['original'][dup].iloc[0]} (duplicate original ids?)")
    return plan


def _place(src: Path, dst: Path, link: bool) -> None:
    """Symlink (or copy) src to dst; an existing correct link is kept so rebuilding is cheap."""
    if dst.is_symlink() or dst.exists():
        if link and dst.is_symlink() and os.readlink(dst) == str(src):
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        dst.symlink_to(src)
    else:
        shutil.copyfile(src, dst)


def build_layout(shared: str | os.PathLike, out: str | os.PathLike, link: bool = True,
                 landmarks: str | None = None) -> dict:
    """Write the GLDv2-layout view described in the module doc; returns counts (also in out/layout.json)."""
    shared, out = Path(shared), Path(out)
    plan = plan_layout(shared, landmarks)
    missing = [s for s in plan["source"] if not Path(s).is_file()]
    if missing:
        raise KitError(f"{missing[0]}: image file not found ({len(missing)} missing under {shared})")
    for image_id, role, src in zip(plan["id"], plan["role"], plan["source"]):
        _place(Path(src).resolve(), image_path(out, role, image_id), link)

    train = plan[plan["role"] == "train"]
    test = plan[plan["role"] == "test"]
    write_csv(pd.DataFrame({"id": train["id"], "url": "", "landmark_id": train["landmark_id"]}), out / "train.csv")
    write_csv(pd.DataFrame({"id": test["id"], "landmarks": ""}), out / "sample_submission.csv")
    sol = np.where(test["landmark_id"] >= 0, test["landmark_id"].astype(str), "")
    write_csv(pd.DataFrame({"id": test["id"], "landmarks": sol}), out / "test_solution.csv")
    write_csv(plan.loc[plan["role"] == "distractors", ["id"]], out / "distractors.csv")
    write_csv(plan[["id", "original", "role", "landmark_id", "source"]], out / "id_map.csv")
    counts = {
        "train_images": len(train), "train_classes": int(train["landmark_id"].nunique()),
        "test_images": len(test), "test_landmark_images": int((test["landmark_id"] >= 0).sum()),
        "test_nonlandmark_queries": int(((test["landmark_id"] < 0) & (test["dataset"] == "oxford_paris")).sum()),
        "test_distractors": int((test["dataset"] == "distractors").sum()),
        "fit_distractors": int((plan["role"] == "distractors").sum()),
        "linked": link,
    }
    write_json(counts, out / "layout.json")
    return counts


# ------------------------------------------------------------------------ validation negatives
# A GLR test set is mostly everyday photos and buildings that are not index landmarks; Caltech objects on
# plain backgrounds are neither. These pools of ../shared/data hold such photos; a run adds those that
# are NOT part of its own data to its fitting/validation non-landmarks (distractors.csv), never to test.
NEGATIVE_POOLS = {
    "everyday": "porto/: COCO 2017 photos (people, rooms, streets, food, animals, vehicles)",
    "other_buildings": "oxford_paris/: non-landmark queries (other Oxford/Paris buildings and street photos)",
    "porto_landmarks": "porto/: training photos of 5 Porto landmarks (landmarks that are not in the index)",
    "op_landmarks": "oxford_paris/: training photos of Oxford/Paris landmarks (not in the index)",
}


def negative_pools(shared: str | os.PathLike, op_kept: set | None = None) -> pd.DataFrame:
    """One row per candidate validation negative: id (hex, stable), pool, source path. `op_kept`: the
    Oxford/Paris classes of the run's own index (their photos are never negatives)."""
    shared = Path(shared)
    rows = []
    porto = shared / "porto"
    if (porto / "provenance.csv").is_file() and (porto / "train.csv").is_file():
        prov = read_csv(porto / "provenance.csv", dtype={"id": str})
        for i in prov.loc[prov["kind"] == "non_landmark", "id"]:
            rows.append(("everyday", f"porto/{i}", image_path(porto, "test", i)))
        for i in read_csv(porto / "train.csv", dtype={"id": str})["id"]:
            rows.append(("porto_landmarks", f"porto/{i}", image_path(porto, "train", i)))
    op = shared / "oxford_paris" / "labels.csv"
    if op.is_file():
        labels = read_csv(op, ("id", "landmark_id", "split"), dtype={"id": str})
        lid = pd.to_numeric(labels["landmark_id"], errors="coerce")
        for i in labels.loc[lid.isna() & (labels["split"] == "query"), "id"]:
            rows.append(("other_buildings", f"oxford_paris/{i}", shared / "oxford_paris" / "images" / f"{i}.jpg"))
        other = lid.notna() & (labels["split"] == "train") & ~lid.isin(op_kept or set())
        for i in labels.loc[other, "id"]:
            rows.append(("op_landmarks", f"oxford_paris/{i}", shared / "oxford_paris" / "images" / f"{i}.jpg"))
    frame = pd.DataFrame(rows, columns=["pool", "original", "source"])
    frame.insert(0, "id", [hex_id(f"negative/{o}") for o in frame["original"]])
    return frame


def validation_negatives(shared, exclude=(), per_pool: int = 100, op_kept: set | None = None) -> pd.DataFrame:
    """The first `per_pool` images (in id order: a fixed, class-blind draw) of every pool not in `exclude`."""
    pools = negative_pools(shared, op_kept)
    pools = pools[~pools["pool"].isin(set(exclude))]
    pools = pools.sort_values(["pool", "id"], kind="stable").groupby("pool", sort=False).head(per_pool)
    return pools[[Path(s).is_file() for s in pools["source"]]].reset_index(drop=True)


def add_negatives(data: str | os.PathLike, out: str | os.PathLike, negatives: pd.DataFrame) -> dict:
    """A GLDv2-layout view of `data` (symlinks) whose distractors.csv = data's own distractors + `negatives`
    (their images linked under out/distractors/). `out` may be `data` itself (a view built by
    `build_layout`). -> counts per pool."""
    data, out = Path(data).resolve(), Path(out)
    own = pd.DataFrame({"id": []})
    if (data / "distractors.csv").is_file():
        own = read_csv(data / "distractors.csv", dtype={"id": str})[["id"]]
    if out.resolve() != data:
        out.mkdir(parents=True, exist_ok=True)
        for entry in data.iterdir():
            if entry.name in ("distractors", "distractors.csv"):
                continue
            _place(entry, out / entry.name, True)
        for i in own["id"]:
            _place(image_path(data, "distractors", i).resolve(), image_path(out, "distractors", i), True)
    clash = set(own["id"]) & set(negatives["id"])
    if clash:
        raise KitError(f"{data}: validation negative id {sorted(clash)[0]} is already a distractor")
    for i, src in zip(negatives["id"], negatives["source"]):
        _place(Path(src).resolve(), image_path(out, "distractors", i), True)
    write_csv(pd.concat([own, negatives[["id"]]], ignore_index=True), out / "distractors.csv")
    write_csv(negatives[["id", "pool", "original"]], out / "validation_negatives.csv")
    return {"caltech_distractors": len(own), **negatives["pool"].value_counts().sort_index().to_dict()}
