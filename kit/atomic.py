"""Atomic file writes: a reader sees the old file or the new one, never a half-written one."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from kit.errors import KitError

if TYPE_CHECKING:
    import pandas as pd

# .<target name>.<writer pid>-<8 random characters>.tmp[.ext]: the temp file of a write in progress
TEMP_NAME = re.compile(r"^\..+\.(\d+)-[a-z0-9_]{8}\.tmp(\.[^.]*)?$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike) -> int:
    """Remove the temp files in `folder` whose writer process is gone (killed mid-write) -> count."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = TEMP_NAME.match(entry.name)
            if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed += 1
    return removed


_sweep_once = functools.cache(clean_stale_temps)  # at the first write into a folder by this process


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _new_temp(path: Path) -> Path:
    """An empty temp file beside `path`, mode 0666 minus the umask (applied by the kernel)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{''.join(path.suffixes[-1:])}")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise KitError(f"{path}: cannot write here ({e.strerror or e})") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `path`, renamed onto it if the block succeeds; durable (not for caches): fsync both."""
    path = Path(path)
    if path.is_dir():
        raise KitError(f"{path}: is a directory; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KitError(f"{path.parent}: cannot create output directory ({e.strerror or e})") from None
    _sweep_once(os.path.abspath(path.parent))
    tmp = _new_temp(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def copy_file(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a file atomically (checkpoints are large: no half-written copy after an interrupt)."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


def write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write JSON atomically, pretty-printed."""
    return write_text(json.dumps(obj, indent=2, default=str) + "\n", path)


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **kw) -> Path:
    """Write a DataFrame as CSV atomically (no index)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kw)
    return Path(path)
