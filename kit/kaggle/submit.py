"""`kit submit`: validate, then send a submission or notebook version to Kaggle (`kaggle` imported lazily)."""
from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from kit.errors import KitError
from kit.submission import read_sample_ids, read_submission

MIN_POLL = 10  # seconds between polls of a submission's status
WAIT_MAX = 12 * 3600  # --wait 0: as long as a notebook may run


def credential_source(env=None, home: str | os.PathLike | None = None) -> str | None:
    """Where kaggle 2.2.x would find credentials (token, username+key, kaggle.json, OAuth), or None."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    home = Path(home) if home else Path.home()
    dirs = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    dirs += [home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]
    names = ("access_token", "access_token.txt", "kaggle.json", "credentials.json")
    return next((str(d / name) for d in dirs for name in names if (d / name).is_file()), None)


def _kaggle_api():
    """An authenticated KaggleApi; KitError (one line) when credentials are missing or refused."""
    if credential_source() is None:
        raise KitError("no Kaggle credentials: set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY), or save "
                       "the token from kaggle.com/settings to ~/.kaggle/access_token (or kaggle.json)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except SystemExit:
        raise KitError("Kaggle refused the credentials (token expired or invalid?): "
                       "regenerate it at kaggle.com/settings") from None
    except Exception as e:  # noqa: BLE001 - network errors while checking a token
        raise _api_error(e, "authenticate") from None
    return api


def _api_error(e: Exception, what: str) -> KitError:
    """Map a requests/kaggle exception to one line."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    first = (str(e).splitlines() or [type(e).__name__])[0]
    first = first if len(first) <= 160 else first[:157] + "..."
    if status in (401, 403):
        return KitError(f"Kaggle refused to {what} (HTTP {status}): check the credentials and that you "
                        "accepted the competition rules on its web page")
    if status == 404:
        return KitError(f"Kaggle could not {what} (HTTP 404): check the competition/kernel name")
    if isinstance(e, ValueError):
        return KitError(f"Kaggle could not {what}: {first}")
    return KitError(f"cannot reach Kaggle to {what} ({type(e).__name__}: {first})")


def validate_submission(file: str | os.PathLike, sample: str | os.PathLike | None) -> dict:
    """Check `file` as a submission (format, and the same ids as `sample` when given) -> counts."""
    ids = read_sample_ids(sample) if sample else None
    df = read_submission(file, sample_ids=ids)
    return {"rows": len(df), "predicted": int((df["label"] >= 0).sum()), "ids_checked": ids is not None}


def _download_sample(api, competition: str, dest: Path) -> Path:
    """sample_submission.csv of the competition into `dest` (unzipped if Kaggle sends a zip)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            api.competition_download_file(competition, "sample_submission.csv", path=str(dest), quiet=True)
    except Exception as e:  # noqa: BLE001
        raise _api_error(e, f"download {competition}'s sample_submission.csv") from None
    got = sorted(dest.glob("sample_submission.csv*"))
    if got and got[0].suffix == ".zip":
        shutil.unpack_archive(got[0], dest)
    if not (dest / "sample_submission.csv").is_file():
        raise KitError(f"{competition}: no sample_submission.csv downloaded; pass --sample PATH")
    return dest / "sample_submission.csv"


def kaggle_command(competition: str, file: str | os.PathLike, message: str, kernel: str | None = None,
                   version: int | None = None, wait: int | None = None, poll_interval: int = 60) -> str:
    """The `kaggle competitions submit ...` command line that does what `submit` does (2.2.x flags)."""
    argv = ["kaggle", "competitions", "submit", competition, "-f", str(file), "-m", message]
    if kernel is not None:
        argv += ["-k", kernel, "-v", str(version)]
    if wait is not None:
        argv += ["--wait", str(wait), "--poll-interval", str(poll_interval)]
    return shlex.join(argv)


def submit(competition: str, file: str | os.PathLike = "submission.csv", message: str = "",
           sample: str | os.PathLike | None = None, kernel: str | None = None, version: int | None = None,
           dry_run: bool = False, wait: int | None = None, poll_interval: int = 60, log=print,
           sleep=time.sleep) -> str:
    """Validate and submit `file` (or a notebook version) like `kaggle_command`; dry_run sends nothing; `wait` polls."""
    if (kernel is None) != (version is None):
        raise KitError("--kernel and --version go together (code competitions: the notebook and its version)")
    if kernel is not None and kernel.count("/") != 1:
        raise KitError(f"--kernel '{kernel}' is not <owner>/<notebook-slug>")
    if version is not None and version < 1:
        raise KitError(f"--version {version}: notebook versions start at 1 (see the notebook's version list)")
    if wait is not None and (wait < 0 or poll_interval < MIN_POLL):
        raise KitError(f"--wait {wait} --poll-interval {poll_interval}: need wait >= 0 and an interval >= {MIN_POLL} s")
    message = message or f"kit {Path(file).name}"
    if kernel is None:
        if not Path(file).is_file():
            raise KitError(f"{file}: file not found")
        info = validate_submission(file, sample)
        checked = "ids match " + str(sample) if info["ids_checked"] else "format only, ids not checked"
        log(f"{file}: {info['rows']} rows, {info['predicted']} with a landmark ({checked})")
    if dry_run:
        log(f"dry run, nothing sent; the same as: {kaggle_command(competition, file, message, kernel, version, wait, poll_interval)}")
        return ""
    api = _kaggle_api()
    if kernel is None and sample is None:
        with tempfile.TemporaryDirectory() as tmp:
            validate_submission(file, _download_sample(api, competition, Path(tmp)))
        log(f"{file}: ids match {competition}'s sample_submission.csv")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            if kernel is None:
                result = api.competition_submit(str(file), message, competition, quiet=True)
            else:
                result = api.competition_submit_code(Path(file).name, message, competition, kernel, int(version),
                                                     quiet=True)
    except Exception as e:  # noqa: BLE001 - requests errors, kaggle's ValueErrors
        raise _api_error(e, f"submit to {competition}") from None
    text = str(getattr(result, "message", "") or "")
    if text == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", None):
        raise KitError(f"cannot reach Kaggle to submit to {competition} (upload of {file} failed)")
    ref = getattr(result, "ref", None)
    if wait is not None:
        if not ref:
            raise KitError(f"{competition}: Kaggle returned no submission ref to wait for ({text or 'no message'})")
        log(f"submission {ref}: {text or 'submitted'}; waiting for the score")
        wait_for_score(api, competition, ref, wait or WAIT_MAX, poll_interval, log=log, sleep=sleep)
    return text or "submitted"


def wait_for_score(api, competition: str, ref, timeout: float, interval: float, log=print, sleep=time.sleep):
    """Poll submission `ref` until scored -> the submission; KitError on failure or after `timeout` seconds."""
    start = time.monotonic()
    while True:
        try:
            sub = _get_submission(api, competition, ref)
        except Exception as e:  # noqa: BLE001
            if getattr(getattr(e, "response", None), "status_code", None) != 404:  # 404: not readable yet
                raise _api_error(e, f"read submission {ref}") from None
            sub = None
        status = _status(sub)
        if status == "complete":
            score = getattr(sub, "public_score", None)
            log(f"submission {ref}: complete, public score {score if score not in (None, '') else 'not shown'}")
            return sub
        if status == "error":
            raise KitError(f"submission {ref} failed on Kaggle: {getattr(sub, 'error_description', '') or 'no reason given'}")
        elapsed = time.monotonic() - start
        if elapsed >= timeout:
            raise KitError(f"submission {ref}: still {status} after {elapsed:.0f} s; "
                           f"see it later with `kaggle competitions submissions`")
        log(f"submission {ref}: {status} ({elapsed:.0f} s)")
        sleep(min(interval, max(timeout - elapsed, 0)))


def _get_submission(api, competition: str, ref):
    """kaggle 2.2.x: get_submission(ref); older clients: look it up in the competition's submission list."""
    if hasattr(api, "get_submission"):
        return api.get_submission(ref)
    with contextlib.redirect_stdout(io.StringIO()):
        subs = api.competition_submissions(competition) or []
    return next((s for s in subs if str(getattr(s, "ref", "")) == str(ref)), None)


def _status(sub) -> str:
    """'pending' | 'complete' | 'error' from an ApiSubmission's status (an enum or its name)."""
    status = getattr(sub, "status", None)
    name = str(getattr(status, "name", status) or "pending").lower()
    return next((s for s in ("complete", "error") if s in name), "pending")
