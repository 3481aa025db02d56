"""kit submit / kit kaggle package / the notebook's decisions, with no network and no Kaggle account."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

import kit.kaggle as kk
import kit.kaggle.package as kpkg
import kit.kaggle.runtime as krt
import kit.kaggle.submit as ksub
from kit.cli import main
from kit.errors import KitError

IDS = ["00000000000000a1", "00000000000000b2", "00000000000000c3"]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path):
    sample = _write(tmp_path / "sample_submission.csv", "id,landmarks\n" + "".join(f"{i},\n" for i in IDS))
    sub = _write(tmp_path / "submission.csv", f"id,landmarks\n{IDS[0]},12 0.9\n{IDS[1]},\n{IDS[2]},7 0.25\n")
    return sample, sub


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


class FakeApi:
    """Records calls like KaggleApi; `fail` is raised by the submit calls."""
    COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE = "Could not submit to competition"

    def __init__(self, fail=None, sample_text=None):
        self.fail, self.sample_text, self.calls = fail, sample_text, []

    def competition_submit(self, file_name, message, competition, quiet=False):
        self.calls.append(("submit", file_name, message, competition))
        if self.fail:
            raise self.fail
        return type("R", (), {"message": "Successfully submitted"})()

    def competition_submit_code(self, file_name, message, competition, kernel, kernel_version, quiet=False):
        self.calls.append(("code", file_name, message, competition, kernel, kernel_version))
        return type("R", (), {"message": "Successfully submitted code"})()

    def competition_download_file(self, competition, file_name, path=None, quiet=False):
        self.calls.append(("download", competition, file_name))
        _write(Path(path) / file_name, self.sample_text)


def test_credential_source(no_credentials, monkeypatch):
    assert ksub.credential_source() is None
    _write(no_credentials / ".kaggle" / "kaggle.json", '{"username": "u", "key": "k"}')
    assert ksub.credential_source() == str(no_credentials / ".kaggle" / "kaggle.json")
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    assert ksub.credential_source() == "KAGGLE_USERNAME/KAGGLE_KEY"
    monkeypatch.setenv("KAGGLE_API_TOKEN", "t")
    assert ksub.credential_source() == "KAGGLE_API_TOKEN"


def test_dry_run_prints_and_never_calls_kaggle(files, monkeypatch, capsys):
    sample, sub = files
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: pytest.fail("dry run called Kaggle"))
    rc = main(["submit", "-c", "landmark-recognition-2021", "-f", str(sub), "-m", "v1", "--sample", str(sample),
               "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out == [f"{sub}: 3 rows, 2 with a landmark (ids match {sample})",
                   f"dry run: would submit file {sub} to landmark-recognition-2021 with message 'v1'"]


def test_missing_credentials_one_line_nonzero_file_untouched(files, no_credentials, capsys):
    sample, sub = files
    before = sub.read_bytes()
    rc = main(["submit", "-c", "comp", "-f", str(sub), "--sample", str(sample)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("kit: error: no Kaggle credentials") and err.count("\n") == 1
    assert sub.read_bytes() == before


def test_network_failure_one_line(files, monkeypatch, capsys):
    sample, sub = files
    before = sub.read_bytes()
    api = FakeApi(fail=requests.exceptions.ConnectionError("Max retries exceeded with url: /api/v1\nmore"))
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: api)
    rc = main(["submit", "-c", "comp", "-f", str(sub), "--sample", str(sample)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == ("kit: error: cannot reach Kaggle to submit to comp "
                   "(ConnectionError: Max retries exceeded with url: /api/v1)\n")
    assert api.calls == [("submit", str(sub), f"kit {sub.name}", "comp")]
    assert sub.read_bytes() == before


def test_forbidden_names_the_rules(files, monkeypatch):
    sample, sub = files
    resp = requests.Response()
    resp.status_code = 403
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: FakeApi(fail=requests.exceptions.HTTPError("403", response=resp)))
    with pytest.raises(KitError, match=r"HTTP 403.*accepted the competition rules"):
        ksub.submit("comp", sub, sample=sample, log=lambda *a: None)


def test_submit_calls_api_like_the_kaggle_cli(files, monkeypatch):
    sample, sub = files
    api = FakeApi(sample_text=sample.read_text())
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: api)
    # no --sample: the competition's sample_submission.csv is downloaded and the ids checked
    assert ksub.submit("comp", sub, "m1", log=lambda *a: None) == "Successfully submitted"
    assert api.calls == [("download", "comp", "sample_submission.csv"), ("submit", str(sub), "m1", "comp")]
    api.calls.clear()
    assert ksub.submit("comp", "submission.csv", "m2", kernel="alice/kit-inference", version=3) == \
        "Successfully submitted code"
    assert api.calls == [("code", "submission.csv", "m2", "comp", "alice/kit-inference", 3)]


def test_downloaded_sample_with_other_ids_rejects_before_submitting(files, monkeypatch):
    _, sub = files
    api = FakeApi(sample_text="id,landmarks\n00000000000000a1,\n00000000000000ff,\n")
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: api)
    with pytest.raises(KitError, match="id 00000000000000b2 is not in sample_submission.csv"):
        ksub.submit("comp", sub, log=lambda *a: None)
    assert [c[0] for c in api.calls] == ["download"]


def test_wrong_ids_caught_before_kaggle(files, monkeypatch, capsys):
    sample, sub = files
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: pytest.fail("invalid file reached Kaggle"))
    bad = _write(sub.with_name("bad.csv"), f"id,landmarks\n{IDS[0]},1 0.5\n{IDS[1]},\n")  # c3 missing
    assert main(["submit", "-f", str(bad), "--sample", str(sample), "--dry-run"]) == 2
    assert capsys.readouterr().err == (f"kit: error: {bad}: 1 id(s) of sample_submission.csv missing "
                                       f"(first: {IDS[2]})\n")


def test_kernel_needs_version_and_owner():
    with pytest.raises(KitError, match="--kernel and --version go together"):
        ksub.submit("comp", kernel="alice/nb")
    with pytest.raises(KitError, match="--kernel 'nb' is not <owner>/<notebook-slug>"):
        ksub.submit("comp", kernel="nb", version=1)


def _fake_run(root: Path, exp: str, fold: int) -> Path:
    run = root / "runs" / exp / f"fold{fold}"
    _write(run / "config.yaml", f"name: {exp}\n")
    (run / "best.pt").write_bytes(b"checkpoint-" + exp.encode())
    return run


def test_package_metadata_and_models(tmp_path, capsys):
    r0, r1 = _fake_run(tmp_path, "top2k", 0), _fake_run(tmp_path, "top18k", 1)
    params = _write(tmp_path / "delf.json", '{"threshold": 30}')
    out = tmp_path / "pkg"
    rc = main(["kaggle", "package", "--out", str(out), "--runs", str(r0), str(r1), "--user", "alice", "--no-wheels",
               "--ensemble", "soft --weights 0.6 0.4", "--filters", f"delf --params {params} --min-inliers 12",
               "--public-test-count", "3"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["kernel", "kit-models"]
    kernel = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert kernel == {"id": "alice/kit-inference", "title": "kit inference", "code_file": "inference.ipynb",
                      "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
                      "enable_tpu": False, "enable_internet": False,
                      "dataset_sources": ["alice/kit-wheels", "alice/kit-models"], "competition_sources": ["landmark-recognition-2021"],
                      "kernel_sources": [], "model_sources": []}
    assert (out / "kernel" / "inference.ipynb").read_bytes() == \
        (Path(kk.__file__).parents[2] / "notebooks" / "inference.ipynb").read_bytes()
    models = out / "kit-models"
    assert json.loads((models / "dataset-metadata.json").read_text()) == \
        {"title": "kit models", "id": "alice/kit-models", "licenses": [{"name": "CC0-1.0"}]}
    assert (models / "runs/top18k/fold1/best.pt").read_bytes() == b"checkpoint-top18k"
    assert (models / "runs/top2k/fold0/config.yaml").read_text() == "name: top2k\n"
    assert sorted(p.name for p in (models / "params").iterdir()) == ["delf.json"]
    assert (models / "params" / "delf.json").read_text() == '{"threshold": 30}'
    manifest = json.loads((models / kk.MANIFEST).read_text())
    assert manifest == {"kit_version": "0.1.0", "competition": "landmark-recognition-2021", "public_test_count": 3,
                        "runs": [{"exp": "top2k", "fold": 0}, {"exp": "top18k", "fold": 1}],
                        "ensemble": ["soft", "--weights", "0.6", "0.4"],
                        "filters": [["delf", "--params", "{models}/params/delf.json", "--min-inliers", "12"]]}
    # packaging again with one run leaves no trace of the other
    assert main(["kaggle", "package", "--out", str(out), "--runs", str(r1), "--user", "alice", "--no-wheels"]) == 0
    assert [p.name for p in (models / "runs").iterdir()] == ["top18k"] and not (models / "params").exists()
    (r0 / "best.pt").unlink()
    with pytest.raises(KitError, match="top2k/fold0: no best.pt"):
        kpkg.package(tmp_path / "pkg2", "alice", runs=[r0], wheels=False)


def _tiny_wheel(tmp_path: Path) -> Path:
    """A real one-module wheel built offline, standing in for a dependency from a local wheelhouse."""
    src = tmp_path / "tinydep"
    _write(src / "pyproject.toml", '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
           '[project]\nname = "tinydep"\nversion = "1.2"\n')
    _write(src / "tinydep.py", "X = 1\n")
    house = tmp_path / "house"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(house)], check=True, capture_output=True)
    return house


def test_package_wheels_offline(tmp_path, capsys):
    house = _tiny_wheel(tmp_path)
    run = _fake_run(tmp_path, "top2k", 0)
    out = tmp_path / "pkg"
    rc = main(["kaggle", "package", "--out", str(out), "--runs", str(run), "--user", "alice",
               "--deps", "tinydep", "no-such-dep-kit", "--find-links", str(house)])
    cap = capsys.readouterr()
    assert rc == 0
    assert "kit: skipped wheel no-such-dep-kit: pip download failed" in cap.err
    assert "missing (add by hand): no-such-dep-kit" in cap.out
    wheels = out / "kit-wheels"
    assert sorted(p.name for p in wheels.iterdir()) == \
        ["dataset-metadata.json", "kit-0.1.0-py3-none-any.whl", "tinydep-1.2-py3-none-any.whl"]
    assert json.loads((wheels / "dataset-metadata.json").read_text())["id"] == "alice/kit-wheels"
    assert json.loads((out / "kernel" / "kernel-metadata.json").read_text())["dataset_sources"] == \
        ["alice/kit-wheels", "alice/kit-models"]
    with zipfile.ZipFile(wheels / "kit-0.1.0-py3-none-any.whl") as z:
        names = set(z.namelist())
        entry = z.read("kit-0.1.0.dist-info/entry_points.txt").decode()
    assert {"kit/kaggle/package.py", "kit/cli.py", "kit/commands/submit.py", "kit/configs/top2k.yaml",
                "kit/report/page.html.j2"} <= names
    assert not any("__pycache__" in n for n in names)
    assert "kit = kit.cli:main" in entry


@pytest.mark.parametrize("n_test, public, env, mode", [
    (3, 3, {}, "quick"),                                   # the save run on the public copy
    (3, 3, {"KAGGLE_IS_COMPETITION_RERUN": "1"}, "full"),  # Kaggle says: hidden rerun
    (9, 3, {}, "full"),                                    # a bigger (hidden) test set
    (3, 0, {}, "full"),                                    # no public size known: always full
    (3, 3, {"KIT_MODE": "full"}, "full"),
    (9, 3, {"KIT_MODE": "quick"}, "quick"),
])
def test_choose_mode(n_test, public, env, mode):
    assert krt.choose_mode(n_test, public, env) == mode


def test_inference_plan():
    manifest = {"runs": [{"exp": "a", "fold": 0}, {"exp": "b", "fold": 2}],
                "ensemble": ["soft", "--weights", "{models}/params/w.json"],
                "filters": [["delf", "--params", "{models}/params/f.json"]]}
    plan = krt.inference_plan(manifest, "/m", "/d", "/w")
    assert [name for name, _ in plan] == ["predict a fold0", "predict b fold2", "ensemble soft", "filter delf",
                                          "submission"]
    assert plan[1][1] == ["predict", "--config", "/m/runs/b/fold2/config.yaml", "--fold", "2", "--split", "test",
                          "--out", "/w/submissions/b/test_fold2.npz", "runs_dir=/m/runs", "data.data_dir=/d",
                          "submissions_dir=/w/submissions"]
    assert plan[2][1] == ["ensemble", "soft", "/w/submissions/a/test_fold0.npz", "/w/submissions/b/test_fold2.npz",
                          "--weights", "/m/params/w.json", "--out", "/w/ensemble.csv", "--ensembles-dir", "/w/ensembles"]
    assert plan[3][1] == ["filter", "delf", "/w/ensembles/soft.npz", "--params", "/m/params/f.json",
                          "--out", "/w/filtered0_delf.npz"]
    assert plan[4][1] == ["to-submission", "/w/filtered0_delf.npz", "--sample", "/d/sample_submission.csv",
                          "--out", "/w/submission.csv"]
    single = krt.inference_plan({"runs": [{"exp": "a", "fold": 0}]}, "/m", "/d", "/w")
    assert [s[1][0] for s in single] == ["predict", "to-submission"]
    assert single[1][1][1] == "/w/submissions/a/test_fold0.npz"
    two = krt.inference_plan({"runs": [{"exp": "a", "fold": 0}, {"exp": "a", "fold": 1}], "ensemble": None}, "/m", "/d",
                            "/w")
    assert two[2][1][:2] == ["ensemble", "soft"] and two[3][1][1] == "/w/ensembles/soft.npz"


def test_run_plan_stops_at_first_failure(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr("kit.cli.main", lambda argv: seen.append(argv) or (2 if argv[0] == "bad" else 0))
    with pytest.raises(KitError, match="step 'two' failed \\(exit 2\\)"):
        krt.run_plan([("one", ["ok", "x"]), ("two", ["bad"]), ("three", ["ok"])])
    assert seen == [["ok", "x"], ["bad"]]
    assert "$ kit ok x" in capsys.readouterr().out


def test_find_input_and_quick_submission(tmp_path, monkeypatch, files):
    sample, _ = files
    monkeypatch.setattr(krt, "KAGGLE_INPUT", tmp_path / "input")
    _write(tmp_path / "input/datasets/alice/kit-models" / kk.MANIFEST, "{}")
    assert krt.find_input("KIT_MODELS", kk.MANIFEST, env={}) == tmp_path / "input/datasets/alice/kit-models"
    assert krt.find_input("KIT_MODELS", kk.MANIFEST, env={"KIT_MODELS": "/x"}) == Path("/x")
    with pytest.raises(KitError, match="set KIT_DATA"):
        krt.find_input("KIT_DATA", "sample_submission.csv", tmp_path / "input/comp", env={})
    out = krt.quick_submission(sample, tmp_path / "work" / "submission.csv")
    assert out.read_text() == sample.read_text()
