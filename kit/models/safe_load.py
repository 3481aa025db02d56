"""Weights-only loading (no code in a crafted file runs) of every .pt file kit reads; else a one-line KitError."""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from kit.errors import KitError

_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL (\S+)|but got <class '([^']+)'>")


def _numpy_globals() -> list:
    """The numpy types of checkpoints from before kit stored RNG state as tensors (data only, no user code)."""
    core = getattr(np, "_core", None) or np.core
    dtypes = [getattr(np.dtypes, n) for n in ("UInt32DType", "Int64DType", "Int32DType", "Float64DType",
                                               "Float32DType", "BoolDType") if hasattr(np, "dtypes")]
    return [np.ndarray, np.dtype, core.multiarray.scalar, core.multiarray._reconstruct, *dtypes]


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint", map_location="cpu"):
    """`torch.load(path, weights_only=True)` (a crafted file cannot run code), else a one-line KitError naming the file."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        m = _UNSUPPORTED.search(str(e))
        if m:  # a global (function, class) outside torch's allowlist: what a code-running pickle needs
            raise KitError(f"{path}: refusing to load {what}: it holds {m.group(1) or m.group(2)}, not only "
                           "tensors and plain data (loading it could run code)") from None
        detail = str(e).split("WeightsUnpickler error:", 1)[-1]
        raise KitError(f"{path}: cannot read {what} (not a torch file, or a pickle kit does not load: "
                       f"{_first_line(detail)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError, ImportError,
            TypeError, KeyError, IndexError, MemoryError) as e:
        raise KitError(f"{path}: cannot read {what} ({type(e).__name__}: {_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return next((x.strip()[:200] for x in str(e).splitlines() if x.strip()), type(e).__name__)
