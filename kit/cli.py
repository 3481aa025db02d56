"""The `kit` command line: a thin layer that finds every command module and calls it.

Each module in `kit/commands/` defines `add_parser(subparsers)` that registers its sub-command and
sets `func`; heavy imports (torch, faiss) happen inside the command functions so `kit score` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import kit.commands
from kit import __version__
from kit.errors import KitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kit", description="Google Landmark Recognition solution kit.")
    parser.add_argument("--version", action="version", version=f"kit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(kit.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"kit.commands.{info.name}")
        if hasattr(module, "add_parser"):
            module.add_parser(sub)
    return parser


def _single_threaded_opencv() -> None:
    """OpenCV's own thread pool does not survive fork (DataLoader workers hang in it), and workers
    already parallelise decoding: run OpenCV single-threaded, as albumentations recommends."""
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(0)


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise
    args = build_parser().parse_args(argv)
    _single_threaded_opencv()
    try:
        rc = args.func(args)
    except KitError as e:
        print(f"kit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kit: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
