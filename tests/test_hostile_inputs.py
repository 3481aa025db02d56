"""Issue 14: broken and hostile inputs get one line naming the file/row/value (or are skipped and
counted), never a traceback, never silent corruption; plus the cases that already held, so none regresses.
Code execution from checkpoints is in test_hostile_loaders.py."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from kit.cli import main
from kit.config import load_config
from kit.errors import KitError
from kit.atomic import atomic_path, write_text
from kit.images import decode_image, read_image
from kit.layout import image_path
from kit.predictions import Predictions, load_predictions, save_predictions
from test_data import make_gldv2

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.backbone=test_resnet", "model.weights=none", "model.embedding_dim=8", "data.image_size=32",
        "data.batch_size=4", "data.num_workers=0", "data.augment=none", "device=cpu", "predict.batch_size=4"]


def one_line_error(capsys, argv, *, rc: int = 2) -> str:
    """Run `kit argv`; assert exit status rc, no traceback, and one error line 'kit: error: ...' last
    (progress lines of kit.progress may come before it)."""
    assert main([str(a) for a in argv]) == rc
    err = capsys.readouterr().err
    lines = [ln.strip() for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("kit: error: "), err
    assert sum(ln.startswith("kit: error") for ln in lines) == 1 and "Traceback" not in err, err
    return lines[-1]


def png_header(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims width x height (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


def jpeg_bytes(size=32, seed=0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def truncated_jpeg(size=64, seed=0) -> bytes:
    """The first half of a JPEG: a valid header, the image data cut off (OpenCV would grey-fill it)."""
    data = jpeg_bytes(size, seed)
    return data[: len(data) // 2]


# --------------------------------------------------------------------------------------- images
def test_decode_image_never_raises_and_names_the_reason(tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes())
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(60000, 60000))
    assert len(png_header(60000, 60000)) < 80  # the 74-byte file
    big = tmp_path / "big.png"
    big.write_bytes(png_header(20000, 20000))
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(truncated_jpeg())
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert decode_image(good).shape == (32, 32, 3)
    for path, why in [(bomb, "header claims 3600000000 pixels"), (big, "header claims 400000000 pixels, over the cap of 50000000"),
                      (trunc, "truncated JPEG"), (junk, "not a readable image"), (empty, "not a readable image"),
                      (tmp_path / "gone.jpg", "image file not found"), (tmp_path, "not a readable image")]:
        assert decode_image(path) is None
        with pytest.raises(KitError, match=why) as e:
            decode_image(path, strict=True)
        assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_pixel_cap_is_configurable_and_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes(64))
    assert read_image(path, max_pixels=64 * 64).shape == (64, 64, 3)
    calls = []
    monkeypatch.setattr(cv2, "imread", lambda *a, **k: calls.append(a))
    with pytest.raises(KitError, match=r"64x64 = 4096 pixels, over the cap of 4095 \(data.max_pixels\)"):
        read_image(path, max_pixels=4095)
    assert calls == []  # refused from the header: nothing was decoded
    assert load_config(None, ["data.max_pixels=1000"]).data.max_pixels == 1000


def test_jpeg_with_bytes_after_its_end_marker_still_decodes(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes() + b"\0" * 100)  # some cameras append data after EOI
    assert decode_image(path).shape == (32, 32, 3)
    video = np.random.default_rng(0).bytes(2_000_000).replace(b"\xff\xd9", b"\xff\x00")
    path.write_bytes(jpeg_bytes() + video)  # a phone's motion photo: a whole video after the image's EOI
    assert decode_image(path).shape == (32, 32, 3)


def with_exif_thumbnail(jpeg: bytes) -> bytes:
    """`jpeg` with an APP1 segment after SOI that holds a small JPEG (its own SOI ... EOI), as cameras write."""
    payload = b"Exif\0\0" + jpeg_bytes(8, 9)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@pytest.mark.parametrize("params", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 1]],
                         ids=["baseline", "progressive", "restart-markers"])
def test_truncation_is_found_by_walking_the_jpeg(tmp_path, params):
    img = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    whole = with_exif_thumbnail(cv2.imencode(".jpg", img, params)[1].tobytes())
    path = tmp_path / "a.jpg"
    path.write_bytes(whole)
    assert decode_image(path).shape == (48, 64, 3)
    for cut in (len(whole) // 2, len(whole) - 2, len(whole) - 10):
        path.write_bytes(whole[:cut])  # the thumbnail's EOI is still in the last 4 KB: the segment walk skips it
        with pytest.raises(KitError, match="truncated JPEG"):
            read_image(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Tiny data + a random-weight checkpoint; test images: 2 good, a PNG bomb header, a truncated JPEG."""
    from kit.config import config_to_dict
    from kit.models.checkpoint import save_checkpoint
    from kit.models.model import build_model

    root = tmp_path_factory.mktemp("hostile")
    make_gldv2(root, per_class=4)
    test_ids = ["t000good1", "t001good2", "t002bomb", "t003trunc"]
    for i, iid in enumerate(test_ids):
        p = image_path(root, "test", iid)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes([jpeg_bytes(32, i), jpeg_bytes(32, i), png_header(60000, 60000), truncated_jpeg(64, i)][i])
    pd.DataFrame({"id": test_ids, "landmarks": ""}).to_csv(root / "sample_submission.csv", index=False)
    over = [f"data.data_dir={root}", f"data.folds_csv={root / 'folds.csv'}", f"runs_dir={root / 'runs'}",
            f"predictions_dir={root / 'subs'}", "name=h", *TINY]
    cfg = load_config(None, over)
    torch.manual_seed(0)
    model = build_model(cfg.model, 3).eval()
    save_checkpoint({"model": model.state_dict(), "config": config_to_dict(cfg), "label_map": [101, 205, 309],
                     "class_counts": [4, 4, 4], "epoch": 0, "metrics": {}}, cfg.run_dir(0) / "best.pt")
    return root, over, test_ids


def test_predict_bad_images_are_no_landmark_with_a_warning_count(run, tmp_path, caplog):
    root, over, test_ids = run
    out = tmp_path / "test.npz"
    with caplog.at_level("WARNING"):
        assert main(["predict", "--split", "test", "--out", str(out), "--submission", str(tmp_path / "s.csv"),
                     *over]) == 0
    pred = load_predictions(out)
    assert sorted(pred.ids) == sorted(test_ids)  # every image has a row
    row = {i: k for k, i in enumerate(pred.ids)}
    for bad in ("t002bomb", "t003trunc"):
        assert pred.labels[row[bad], 0] == -1 and pred.scores[row[bad], 0] == 0
    for good in ("t000good1", "t001good2"):
        assert pred.labels[row[good], 0] in (101, 205, 309)
    assert "2 image(s) undecodable, truncated or oversized: predicted as no landmark" in caplog.text
    sub = pd.read_csv(tmp_path / "s.csv", keep_default_na=False).set_index("id")
    assert sub.loc["t002bomb", "landmarks"] == "" and sub.loc["t000good1", "landmarks"] != ""


@pytest.mark.parametrize("workers", [0, 2])
def test_predict_strict_is_one_line_naming_the_file_also_from_workers(run, capsys, workers):
    root, over, _ = run
    err = one_line_error(capsys, ["predict", "--split", "test", "--strict", "--out", str(root / "x.npz"), *over,
                                  f"data.num_workers={workers}"])
    assert "t002bomb.jpg: header claims" in err or "t003trunc.jpg: truncated JPEG" in err
    assert "worker" not in err


def test_train_skips_and_counts_undecodable_images(tmp_path, capsys):
    df = make_gldv2(tmp_path, per_class=4)
    image_path(tmp_path, "train", df["id"][2]).write_bytes(png_header(30000, 30000))
    image_path(tmp_path, "train", df["id"][4]).write_bytes(truncated_jpeg())
    over = [f"data.data_dir={tmp_path}", f"data.folds_csv={tmp_path / 'folds.csv'}", f"runs_dir={tmp_path / 'r'}",
            f"predictions_dir={tmp_path / 's'}", "name=t", "optim.epochs=1", *TINY]
    assert main(["train", "--config", "top2k", *over]) == 0
    out = capsys.readouterr().out
    assert "skipped images: 0 missing, 2 undecodable/truncated/oversized" in out
    err = one_line_error(capsys, ["train", "--config", "top2k", "--strict", *over, "name=t2"])
    assert str(image_path(tmp_path, "train", df["id"][2])) in err or str(image_path(tmp_path, "train", df["id"][4])) in err


def test_a_kit_error_from_a_dataloader_worker_keeps_only_its_message():
    msg = ("Caught KitError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
           '  File "x.py", line 1, in f\nkit.errors.KitError: /d/a.jpg: truncated JPEG (no end-of-image marker)\n')
    assert str(KitError(msg)) == "/d/a.jpg: truncated JPEG (no end-of-image marker)"
    assert str(KitError("plain: message")) == "plain: message"


# ---------------------------------------------------------------------------------- folds / CSVs
@pytest.mark.parametrize("text, message", [
    ("id,url,landmark_id\naaa,u,1\nbbb,u,2\naaa,u,2\n", r"row 3 \(line 4\): duplicate id aaa \(first at row 1\)"),
    ("id,url,landmark_id\naaa,u,1\n   ,u,2\n", r"row 2 \(line 3\): empty id"),
    ("id,url,landmark_id\naaa,u,1\n/etc/passwd,u,2\n", r"row 2 \(line 3\): id '/etc/passwd' is not a safe file name"),
    ("id,url,landmark_id\naaa,u,1\n../up,u,2\n", r"row 2 \(line 3\): id '../up' is not a safe"),
    ("id,url,landmark_id\n", r"no data rows \(only a header\)"),
    ("id,url,landmark_id\naaa,u,1e300\n", r"row 1 \(line 2\): landmark_id 1e\+300 is not a non-negative integer"),
    ("id,url\naaa,u\n", r"missing column\(s\) landmark_id"),  # already held: malformed CSVs
    # equal-width ASCII ids take the byte-matrix fast path (kit.idbytes); each must still be caught
    ("id,url,landmark_id\naaaa,u,1\na..b,u,2\n", r"row 2 \(line 3\): id 'a..b' is not a safe"),
    ("id,url,landmark_id\naaaa,u,1\n_bbb,u,2\n", r"row 2 \(line 3\): id '_bbb' is not a safe"),
    ("id,url,landmark_id\naaaa,u,1\nbb/b,u,2\n", r"row 2 \(line 3\): id 'bb/b' is not a safe"),
    ("id,url,landmark_id\nab12,u,1\ncd34,u,2\nab12,u,3\n", r"row 3 \(line 4\): duplicate id ab12 \(first at row 1\)"),
    ("id,url,landmark_id\naaaa,u,NA\n", r"row 1 \(line 2\): landmark_id 'NA' is not"),
    ("id,url,landmark_id\naaaa,u,1\nbbbb,u,\n", r"row 2 \(line 3\): landmark_id \(empty\) is not"),
])
def test_folds_reader_rejects_bad_rows(tmp_path, capsys, text, message):
    (tmp_path / "train.csv").write_text(text)
    err = one_line_error(capsys, ["folds", "--labels", tmp_path / "train.csv", "--top", "2", "--out",
                                  tmp_path / "f.csv"])
    assert "train.csv" in err and __import__("re").search(message, err), err
    assert not (tmp_path / "f.csv").exists()


def test_folds_strip_ids_and_huge_landmark_ids_need_no_lookup_table(tmp_path, capsys):
    rows = [(f" id{i:03d} ", 10**15 if i % 2 else 7) for i in range(20)]
    pd.DataFrame(rows, columns=["id", "landmark_id"]).assign(url="u").to_csv(tmp_path / "train.csv", index=False)
    assert main(["folds", "--labels", str(tmp_path / "train.csv"), "--top", "2", "--n-folds", "2",
                 "--out", str(tmp_path / "f.csv")]) == 0
    folds = pd.read_csv(tmp_path / "f.csv", dtype={"id": str})
    assert folds["id"].tolist()[:2] == ["id000", "id001"]  # whitespace stripped
    assert folds.groupby("landmark_id")["label"].first().to_dict() == {7: 0, 10**15: 1}
    assert folds["id"].is_unique and len(folds) == 20


def test_duplicate_ids_in_a_folds_csv_are_an_error(tmp_path):
    from kit.data.dataset import read_folds

    df = make_gldv2(tmp_path, per_class=2)
    pd.concat([df, df.iloc[[0]]]).to_csv(tmp_path / "folds.csv", index=False)
    with pytest.raises(KitError, match=rf"folds.csv: row 7 \(line 8\): duplicate id {df['id'][0]}"):
        read_folds(tmp_path / "folds.csv", 0)


# ------------------------------------------------------------------------ submissions / npz files
def _sub(path, rows):
    pd.DataFrame(rows, columns=["id", "landmarks"]).to_csv(path, index=False)
    return path


def test_header_only_submission_and_solution(tmp_path, capsys):
    header = tmp_path / "empty.csv"
    header.write_text("id,landmarks\n")
    sol = _sub(tmp_path / "sol.csv", [("aaa", "1")])
    sub = _sub(tmp_path / "sub.csv", [("aaa", "1 0.5")])
    assert "empty.csv: no data rows (only a header)" in one_line_error(capsys, ["score", header, sol])
    assert "empty.csv: no data rows" in one_line_error(capsys, ["score", sub, header])
    assert "empty.csv: no data rows" in one_line_error(capsys, ["ensemble", "max", header, header,
                                                                "--out", tmp_path / "o.csv"])


def _npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


GOOD = dict(ids=np.array(["aaa", "bbb"]), labels=np.array([[1], [2]]), scores=np.array([[0.5], [0.4]], np.float32))


@pytest.mark.parametrize("arrays, message", [
    ({**GOOD, "ids": np.array(["aaa", "aaa"])}, r"row 2: duplicate id aaa \(first at row 1\)"),
    ({**GOOD, "ids": np.array(["aaa", " bbb"])}, r"row 2: id ' bbb' is blank, padded or not a safe file name"),
    ({**GOOD, "ids": np.array(["aaa", "/abs/path"])}, r"row 2: id '/abs/path' is blank, padded"),
    ({**GOOD, "scores": np.array([[0.5], [np.nan]], np.float32)}, r"row 2: non-finite score"),
    ({**GOOD, "scores": np.array([[0.5, 0.1], [0.4, 0.1]], np.float32)}, r"labels \(2, 1\) and scores \(2, 2\)"),
    ({**GOOD, "labels": np.array([[1], [2], [3]])}, r"'labels' must be \[N, k\] numbers for the 2 ids"),
    ({**GOOD, "embeddings": np.ones((3, 4), np.float32)}, r"'embeddings' must be float \[N, D\]"),
    ({k: v for k, v in GOOD.items() if k != "scores"}, r"not a kit prediction file \(missing scores\)"),
])
def test_bad_prediction_files_are_blamed_not_the_output(tmp_path, capsys, arrays, message):
    bad = _npz(tmp_path / "input.npz", **arrays)
    with pytest.raises(KitError, match=message) as e:
        load_predictions(bad)
    assert str(e.value).startswith(str(bad))
    err = one_line_error(capsys, ["to-submission", bad, "--out", tmp_path / "out.csv"])
    assert "input.npz" in err and "out.csv" not in err and "submission:" not in err


def test_truncated_npz(tmp_path, capsys):
    good = _npz(tmp_path / "good.npz", **GOOD)
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    err = one_line_error(capsys, ["ensemble", "max", good, tmp_path / "cut.npz", "--out", tmp_path / "o.csv"])
    assert "cut.npz: cannot read prediction file" in err


def test_out_is_an_existing_directory(tmp_path, capsys):
    good = _npz(tmp_path / "good.npz", **GOOD)
    (tmp_path / "outdir").mkdir()
    err = one_line_error(capsys, ["to-submission", good, "--out", tmp_path / "outdir"])
    assert "outdir: is a directory; give a file name to write" in err


# ------------------------------------------------------------------------------ YAML and config
@pytest.mark.parametrize("content, message", [
    (b"- a\n- b\n", r"c.yaml: top level must be a mapping of config sections, not a list"),
    (b"name: caf\xe9\n", r"c.yaml: not UTF-8 text \(byte 9: b'\\xe9'\)"),
    (b"data: [1, 2\n", r"c.yaml: invalid YAML"),
    (b"data: 3\n", r"'data' is a section"),
])
def test_bad_yaml_files(tmp_path, capsys, content, message):
    (tmp_path / "c.yaml").write_bytes(content)
    with pytest.raises(KitError, match=message):
        load_config(str(tmp_path / "c.yaml"))
    err = one_line_error(capsys, ["train", "--config", tmp_path / "c.yaml"])
    assert "c.yaml" in err or "data" in err


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", r"data.batch_size=0 is out of range \(must be >= 1"),
    ("data.image_size=0", r"data.image_size=0 is out of range"),
    ("optim.epochs=0", r"optim.epochs=0 is out of range"),
    ("optim.lr=0", r"optim.lr=0.0 is out of range \(must be > 0.0"),
    ("optim.lr=-1", r"optim.lr=-1.0 is out of range"),
    ("optim.lr=nan", r"optim.lr=nan is out of range"),
    ("predict.topk=0", r"predict.topk=0 is out of range"),
    ("data.num_workers=-1", r"data.num_workers=-1 is out of range"),
    ("data.max_pixels=0", r"data.max_pixels=0 is out of range"),
    ("predict.scales=0,1", r"predict.scales contains 0.0"),
    ("data.batch_size=abc", r"data.batch_size='abc' is not a valid int"),  # already held
])
def test_out_of_range_config_values(capsys, override, message):
    with pytest.raises(KitError, match=message):
        load_config("top2k", [override])
    err = one_line_error(capsys, ["train", "--config", "top2k", override])
    assert override.split("=")[0] in err


# --------------------------------------------------------------------------------- filter files
@pytest.mark.parametrize("doc, message", [
    ('{"stages": "delf"}', r"'stages' must be a non-empty list, got str"),
    ('{"stages": ["delf"]}', r"stages\[0\]: must be an object"),
    ('[1, 2]', r"'stages' must be a non-empty list, got list"),
    ('{"stages": [{"name": "nope"}]}', r"stages\[0\]: unknown filter 'nope'"),
    ('{"stages": [{"name": "centroid", "params": {"eta": "high"}}]}', r"param eta='high' is not a finite number"),
    ('{"stages": [{"name": "centroid", "params": [1]}]}', r"'params' must be an object"),
    ('{"stages": [{"name": "sift", "settings": {"neighbours": "3"}}]}', r"setting neighbours='3' is not a number"),
    ('{"stages": [{"name": "sift", "mode": "explode"}]}', r"mode 'explode'"),
    ('{"stages": ', r"not a kit filter file \(JSONDecodeError"),
])
def test_filter_json_with_wrong_types(tmp_path, capsys, doc, message):
    (tmp_path / "f.json").write_text(doc)
    good = _npz(tmp_path / "p.npz", **GOOD)
    err = one_line_error(capsys, ["filter", "centroids", "--query", good, "--load", tmp_path / "f.json", "--out", tmp_path / "o.npz"])
    assert "f.json" in err and __import__("re").search(message, err), err


# ------------------------------------------------------------------------------- ids as paths
def test_ids_never_become_paths_outside_their_folders(tmp_path):
    from kit.ids import safe_file_stem, safe_ids
    from kit.localfeatures.base import cache_path

    class Ext:
        name = "sift"

        def config(self):
            return {}

    cache = tmp_path / "cache"
    for evil in ["/etc/passwd", "../../outside", "a/../../b", "..", "x\0y", " padded"]:
        p = cache_path(cache, Ext(), evil)
        assert p.resolve().is_relative_to(cache.resolve()) and p.parent.parent.parent == cache, p
        assert safe_file_stem(evil).startswith("h") and len(safe_file_stem(evil)) == 41
        with pytest.raises(KitError, match="not a safe file name"):
            image_path(tmp_path, "test", evil)
    assert cache_path(cache, Ext(), "0123abcd").name == "0123abcd.npz"  # normal ids stay readable
    assert safe_ids(["abc", "a.b-c_d", "/x", "a..b", ".abc", "", "x" * 201]).tolist() == \
        [True, True, False, False, False, False, False]


def test_filter_with_a_path_as_prediction_id_is_refused(tmp_path, capsys):
    ids = np.array(["aaa", str(tmp_path / "outside")])
    bad = _npz(tmp_path / "p.npz", **{**GOOD, "ids": ids})
    err = one_line_error(capsys, ["filter", "sift", "--query", bad, "--param", "threshold=1", "--out", tmp_path / "o.npz",
                                  "--cache-dir", tmp_path / "cache"])
    assert "p.npz: row 2: id" in err
    assert not (tmp_path / "outside").exists() and not (tmp_path / "outside.npz").exists()


# ---------------------------------------------------------------------------- last line of defence
def test_oserror_and_valueerror_escaping_a_command_are_one_line(monkeypatch, capsys):
    import kit.commands.score

    def broken(args):
        raise PermissionError(13, "Permission denied", "/root/secret.csv")

    monkeypatch.setattr(kit.commands.score, "run", broken)
    err = one_line_error(capsys, ["score", "a.csv", "b.csv"])
    assert err == ("kit: error: PermissionError: [Errno 13] Permission denied: '/root/secret.csv' "
                   "(--debug or KIT_DEBUG=1 shows the traceback)")
    monkeypatch.setattr(kit.commands.score, "run", lambda args: int("x"))
    assert "ValueError: invalid literal for int()" in one_line_error(capsys, ["score", "a.csv", "b.csv"])

    assert main(["--debug", "score", "a.csv", "b.csv"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("KIT_DEBUG", "1")
    assert main(["score", "a.csv", "b.csv"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- atomic writes
def test_atomic_write_fsyncs_file_and_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_text("hello", tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "hello"
    assert len(synced) == 2 and ".out.txt." in synced[0] and synced[1] == str(tmp_path.resolve())


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    write_text("old", tmp_path / "out.txt")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert (tmp_path / "out.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_temps_of_killed_writes_are_swept_once_per_folder(tmp_path, monkeypatch):
    """A write never scans its folder: the first write into a folder removes the temps of dead writers
    (of any file there); later writes in the same process do not look again."""
    target = tmp_path / "sub.csv"
    code = textwrap.dedent(f"""
        import sys, time
        from kit.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("partial")
            print("ready", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".sub.csv.")  # the kill left its temp file
    kept = [f".live.csv.{os.getppid()}-abcd1234.tmp.csv", ".notes.tmp", "keep.csv.999999999-abcd1234.tmp"]
    for name in [".other.csv.999999999-abcd1234.tmp.csv", *kept]:  # a dead writer's temp; a live one's; others
        (tmp_path / name).write_text("x")
    scans = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": scans.append(str(path)) or real_scandir(path))
    write_text("id,landmarks\n", target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "sub.csv"])
    (tmp_path / ".later.csv.999999999-abcd1234.tmp").write_text("x")
    for i in range(5):
        write_text(str(i), tmp_path / f"more{i}.txt")
    assert scans == [str(tmp_path)]  # one scan for six writes
    assert (tmp_path / ".later.csv.999999999-abcd1234.tmp").exists()  # swept by the next process only


def test_atomic_writes_from_threads_change_no_process_wide_state(tmp_path, monkeypatch):
    """8 threads write while another creates folders: every folder and file gets 0777/0666 minus the umask
    (the umask is never set, not even briefly, so no other thread can create a file in a 0000 window)."""
    import threading

    old = os.umask(0o027)
    try:
        def no_umask(mask):
            raise AssertionError("os.umask called while other threads create files")

        monkeypatch.setattr(os, "umask", no_umask)
        stop, dirs, modes = threading.Event(), [], []

        def make_dirs():
            i = 0
            while not stop.is_set():
                d = tmp_path / f"d{i}"
                d.mkdir()
                dirs.append(d)
                modes.append(d.stat().st_mode & 0o777)
                i += 1

        def write(k):
            for i in range(40):
                write_text("x", tmp_path / f"w{k}" / f"{i}.txt")
                save = tmp_path / f"w{k}" / f"{i}.bin"
                with atomic_path(save, durable=False) as tmp:
                    tmp.write_bytes(b"y")

        maker = threading.Thread(target=make_dirs)
        maker.start()
        writers = [threading.Thread(target=write, args=(k,)) for k in range(8)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        maker.join()
    finally:
        monkeypatch.undo()
        os.umask(old)
    files = [p for k in range(8) for p in (tmp_path / f"w{k}").iterdir()]
    assert len(files) == 8 * 80 and dirs
    assert set(modes) == {0o750} and {p.stat().st_mode & 0o777 for p in files} == {0o640}
    assert {(tmp_path / f"w{k}").stat().st_mode & 0o777 for k in range(8)} == {0o750}


def test_cache_writes_are_atomic_but_not_fsynced(tmp_path, monkeypatch):
    from kit.localfeatures.base import LocalFeatures, load_features, save_features

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    feat = LocalFeatures(np.ones((3, 2), np.float32), np.ones((3, 4), np.float32), np.ones(3, np.float32))
    save_features(feat, tmp_path / "ab" / "abc.npz")
    assert synced == [] and sorted(p.name for p in (tmp_path / "ab").iterdir()) == ["abc.npz"]
    assert np.array_equal(load_features(tmp_path / "ab" / "abc.npz").descriptors, feat.descriptors)
    write_text("out", tmp_path / "out.txt")  # outputs: file and folder fsynced
    assert len(synced) == 2


# -------------------------------------------------------------------------- checkpoints, broken
def test_broken_checkpoints_are_one_line(tmp_path):
    from kit.models.checkpoint import load_checkpoint, load_model

    (tmp_path / "junk.pt").write_bytes(b"not a zip file")
    with pytest.raises(KitError, match=r"junk.pt: cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(KitError, match=r"list.pt: not a kit checkpoint \(missing model, config, label_map\)"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"model": [], "config": {}, "label_map": [1]}, tmp_path / "types.pt")
    with pytest.raises(KitError, match=r"types.pt: not a kit checkpoint \('model' is a list\)"):
        load_checkpoint(tmp_path / "types.pt")
    torch.save({"model": {}, "config": {"data": {"batch_size": "x"}}, "label_map": [1]}, tmp_path / "cfg.pt")
    with pytest.raises(KitError, match=r"cfg.pt: config: data.batch_size='x' is not a valid int"):
        load_model(tmp_path / "cfg.pt")
    data = (tmp_path / "list.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(KitError, match=r"cut.pt: cannot read checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


def test_prediction_round_trip_still_works(tmp_path):
    """The checks accept what kit writes (no false alarms): ids, -1 rows, embeddings."""
    pred = Predictions(["0123456789abcdef", "fedcba9876543210"], [[5, -1], [-1, -1]], [[0.9, 0], [0, 0]],
                       np.eye(2, dtype=np.float32))
    back = load_predictions(save_predictions(pred, tmp_path / "p.npz"))
    assert back.ids.tolist() == pred.ids.tolist() and np.array_equal(back.labels, pred.labels)


def test_filter_features_of_bad_images_are_empty_counted_or_strict(tmp_path, caplog):
    """`kit filter`'s one decode path: a bad image cannot verify (no landmark), is counted once, and
    with strict is a one-line error naming it; a corrupt cache file is re-extracted, not a crash."""
    from kit.localfeatures.base import LocalFeatures, cache_path, cached_features

    class Ext:
        name = "fake"

        def config(self):
            return {}

        def extract(self, images):
            return [LocalFeatures(np.ones((1, 2), np.float32), np.ones((1, 4), np.float32), np.ones(1, np.float32))
                    for _ in images]

    good, bomb = tmp_path / "good.jpg", tmp_path / "bomb.png"
    good.write_bytes(jpeg_bytes())
    bomb.write_bytes(png_header(60000, 60000))
    with caplog.at_level("WARNING"):
        feats = cached_features(Ext(), ["good1", "bomb1"], [good, bomb], tmp_path / "cache", progress=False)
    assert len(feats["good1"]) == 1 and len(feats["bomb1"]) == 0
    assert "fake: 1 image(s) missing, undecodable or oversized: treated as no landmark" in caplog.text
    with pytest.raises(KitError, match=r"bomb.png: header claims 3600000000 pixels"):
        cached_features(Ext(), ["bomb1"], [bomb], None, progress=False, strict=True)
    cache_path(tmp_path / "cache", Ext(), "good1").write_bytes(b"PK\x03\x04 truncated")
    assert len(cached_features(Ext(), ["good1"], [good], tmp_path / "cache", progress=False)["good1"]) == 1


def test_kaggle_package_holds_no_credentials(tmp_path, monkeypatch):
    """Already held: the uploaded datasets/notebook never contain the user's Kaggle secrets."""
    secret = "s3cr3t0123456789abcdef"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_KEY", secret)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_API_TOKEN", secret)
    (tmp_path / "home" / ".kaggle").mkdir(parents=True)
    (tmp_path / "home" / ".kaggle" / "kaggle.json").write_text(f'{{"username": "alice", "key": "{secret}"}}')
    # a finished `kit run` of a one-model recipe, its files made by hand
    work = tmp_path / "work"
    outputs = {"folds": {"folds": "folds.csv", "val_solution": "val_solution.csv"},
               "model": {"run": "fold0", "checkpoint": "fold0/best.pt", "config": "fold0/config.yaml"},
               "predict": {"splits": {"test": "test.npz"}}, "submission": {"submission": "../submission.csv"}}
    for sid, files in outputs.items():
        for key, rel in (files["splits"] if "splits" in files else files).items():
            if key == "run":
                continue
            (work / sid / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / sid / rel).write_bytes(b"x")
        enc = {k: ({s: {"path": r} for s, r in v.items()} if isinstance(v, dict) else {"path": v})
               for k, v in files.items()}
        (work / sid / "stage.json").write_text(json.dumps({"outputs": enc}))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - folds: {}\n  - train: {id: model}\n"
                      "  - predict: {model: model, splits: [test]}\n  - submission: {input: predict}\n")
    assert main(["kaggle", "package", "--out-dir", str(tmp_path / "pkg"), "--recipe", str(recipe), "--work-dir", str(work),
                 "--user", "alice", "--no-wheels"]) == 0
    files = [p for p in (tmp_path / "pkg").rglob("*") if p.is_file()]
    assert len(files) >= 5
    assert not [p for p in files if secret.encode() in p.read_bytes()]


# ------------------------------------------------------------------------ local-feature cache entries
def _cache_ext():
    from kit.localfeatures.base import LocalFeatures

    class Ext:
        name = "fake"
        calls = 0

        def config(self):
            return {}

        def extract(self, images):
            Ext.calls += len(images)
            return [LocalFeatures(np.full((5, 2), 2, np.float32), np.full((5, 8), 0.5, np.float32),
                                  np.arange(5, dtype=np.float32)) for _ in images]
    return Ext()


def _broken_entries(entry: bytes) -> dict:
    """What a crash, a disk or a user can leave at a cache path, each a file kit must not trust."""
    import io
    import pickle

    def npz(**arrays):
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    flipped = bytearray(entry)
    flipped[len(entry) // 2] ^= 0xFF  # inside the descriptors: only the zip's CRC-32 can tell
    ok = dict(keypoints=np.zeros((5, 2), np.float32), descriptors=np.zeros((5, 8), np.float32),
              scores=np.zeros(5, np.float32))
    npy = io.BytesIO()
    np.save(npy, np.zeros((5, 2), np.float32))
    return {"empty": b"", "truncated": entry[: len(entry) // 2], "one byte flipped": bytes(flipped),
            "an .npy": npy.getvalue(), "a pickle": pickle.dumps({"keypoints": [1, 2]}), "text": b"features\n",
            "object arrays": npz(**{**ok, "scores": np.array([object()] * 5)}),
            "missing key": npz(keypoints=ok["keypoints"], scores=ok["scores"]),
            "wrong shape": npz(**{**ok, "keypoints": np.zeros((5, 3), np.float32)}),
            "rows disagree": npz(**{**ok, "scores": np.zeros(4, np.float32)}),
            "wrong dtype": npz(**{**ok, "descriptors": np.zeros((5, 8), np.float64)})}


def test_broken_cache_entries_are_extracted_again_and_replaced(tmp_path):
    """A cache entry is read back whole or not at all: a truncated, corrupt or foreign file at its path is
    extracted again (same features as a fresh run) and replaced; nothing else in the cache changes."""
    from kit.localfeatures.base import cache_path, cached_features, load_features

    ext, img = _cache_ext(), tmp_path / "img.jpg"
    img.write_bytes(jpeg_bytes())
    cache = tmp_path / "cache"
    fresh = cached_features(ext, ["abc1", "abd2"], [img, img], cache, progress=False)["abc1"]
    entry = cache_path(cache, ext, "abc1")
    good = entry.read_bytes()
    other = cache_path(cache, ext, "abd2").read_bytes()
    for why, data in _broken_entries(good).items():
        entry.write_bytes(data)
        assert load_features(entry) is None, why
        before = ext.calls
        got = cached_features(ext, ["abc1", "abd2"], [img, img], cache, progress=False)["abc1"]
        assert ext.calls == before + 1, why  # only the broken entry was extracted again
        for a, b in zip((got.keypoints, got.descriptors, got.scores), (fresh.keypoints, fresh.descriptors, fresh.scores)):
            assert np.array_equal(a, b), why
        assert load_features(entry) is not None and cache_path(cache, ext, "abd2").read_bytes() == other, why
    assert sorted(p.name for p in entry.parent.iterdir()) == ["abc1.npz", "abd2.npz"]  # no temp left behind


def test_cache_entry_replaced_by_a_directory_is_one_line(tmp_path):
    from kit.localfeatures.base import cache_path, cached_features

    ext, img = _cache_ext(), tmp_path / "img.jpg"
    img.write_bytes(jpeg_bytes())
    entry = cache_path(tmp_path / "cache", ext, "abc1")
    (entry / "inside").mkdir(parents=True)
    with pytest.raises(KitError) as e:
        cached_features(ext, ["abc1"], [img], tmp_path / "cache", progress=False)
    assert str(e.value) == f"{entry}: is a directory; give a file name to write"
    assert (entry / "inside").is_dir()  # nothing of the user's is removed


# ---------------------------------------------------------------------------- Kaggle manifests
@pytest.mark.parametrize("how", ["dotdot", "absolute", "link"])
def test_kaggle_packaged_stage_naming_a_file_outside_the_models_dataset_is_one_line(tmp_path, how):
    from kit.kaggle.runtime import run_packaged

    models = tmp_path / "models"
    stage = models / "stages" / "folds"
    stage.mkdir(parents=True)
    (tmp_path / "secret.csv").write_text("id,landmark_id\n")
    target = {"dotdot": "../../../secret.csv", "absolute": str(tmp_path / "secret.csv"), "link": "folds.csv"}[how]
    if how == "link":
        (stage / "folds.csv").symlink_to(tmp_path / "secret.csv")
    (stage / "stage.json").write_text(json.dumps({"outputs": {"folds": {"path": target}}}))
    recipe = {"name": "r", "stages": [{"folds": {}}, {"predict": {"splits": ["test"]}},
                                      {"submission": {"input": "predict"}}]}
    (tmp_path / "data").mkdir()
    with pytest.raises(KitError) as e:
        run_packaged({"recipe": recipe, "files": []}, models, tmp_path / "data", tmp_path / "work")
    assert "outside the models dataset" in str(e.value) and "\n" not in str(e.value)
