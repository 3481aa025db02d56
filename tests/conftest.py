"""Suite-wide guard: the tests must leave the source tree as they found it (outputs go to tmp dirs)."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status() -> set[str] | None:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return set(out.stdout.splitlines()) if out.returncode == 0 else None


def pytest_sessionstart(session):
    import os
    import tempfile

    os.environ["KIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="kit-test-cache-")  # never ~/.cache or the tree
    session.config._kit_git_before = _status()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_kit_git_before", None)
    after = _status()
    if before is None or after is None:
        return
    new = sorted(after - before)
    if new:
        print("\nThe test suite changed the source tree (git status):\n  " + "\n  ".join(new))
        session.exitstatus = 1
