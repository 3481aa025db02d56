"""The one in-process `kit` runner: what the demo, the Kaggle notebook and the benches call instead of a
shell, so every step is typed once, echoed as a user would type it, and timed."""
from __future__ import annotations

import shlex
import time

from kit.errors import KitError


def run_kit(*argv, echo: bool = True, name: str | None = None) -> float:
    """Run one `kit` command in this process; a failing step raises KitError. -> seconds taken."""
    from kit.cli import main

    argv = [str(a) for a in argv]
    if echo:
        print(f"\n$ kit {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = main(argv)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise KitError(f"step '{name or 'kit ' + argv[0]}' failed (exit {rc}); see the message above")
    if echo:
        print(f"  ({seconds:.1f} s)", flush=True)
    return seconds
