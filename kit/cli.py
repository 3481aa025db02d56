"""The `kit` command line: each module in `kit/commands/` registers its sub-command with `add_parser(subparsers)`;
heavy imports (torch, faiss) happen inside the command functions so `kit score` is fast."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
import traceback

import kit.commands
from kit import __version__
from kit.errors import KitError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; a flag's help ends with its default (or 'required') unless it states it."""

    def _get_help_string(self, action) -> str:
        text, d = action.help or "", action.default
        if not action.option_strings or "default" in text or "required" in text:
            return text
        if action.required or d in (None, [], argparse.SUPPRESS):
            return text + (" (required)" if action.required else "")
        return text + (" (default: off)" if d is False else " (default: %(default)s)")


class Parser(argparse.ArgumentParser):
    """Help by HelpFormatter; an epilog may be a function, called only when help is shown (registries import torch)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **{**kw, "formatter_class": HelpFormatter})

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `kit` parser: given the sub-command about to run, only its module is imported (all cost ~35 ms)."""
    parser = Parser(prog="kit", description="Google Landmark Recognition solution kit.")
    parser.add_argument("--version", action="version", version=f"kit {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an error "
                        "(also KIT_DEBUG=1; default: off)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    names = sorted(m.name for m in pkgutil.iter_modules(kit.commands.__path__))
    if command is not None and command.replace("-", "_") in names:
        names = [command.replace("-", "_")]  # module = command name with "_" for "-" (to_submission, train_delf)
    for name in names:
        module = importlib.import_module(f"kit.commands.{name}")
        if hasattr(module, "add_parser"):
            module.add_parser(sub)
    return parser


def one_line(e: BaseException) -> str:
    """An exception as one line: its type (unless a KitError) and the first line of its message."""
    text = next((x.strip() for x in str(e).splitlines() if x.strip()), "")
    return text if isinstance(e, KitError) else f"{type(e).__name__}: {text}".rstrip(": ")


def main(argv: list[str] | None = None) -> int:
    import logging

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("KIT_DEBUG", "") not in ("", "0")  # anywhere: show tracebacks
    argv = [a for a in argv if a != "--debug"]
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise
    command = argv[0] if argv and not argv[0].startswith("-") else None  # `kit -h`, `kit --version`: every command
    parser = build_parser(command)
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (`kit run RECIPE --data-dir D seed=1`); argparse only takes
    # positionals in one run, so the later ones come back here
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # OpenCV's thread pool does not survive fork (DataLoader workers hang in it) and workers already parallelise
    # decoding: single-threaded, as albumentations recommends; skipped by commands without images (cv2: ~15 ms)
    if getattr(args, "opencv", True):
        with contextlib.suppress(ImportError):
            importlib.import_module("cv2").setNumThreads(0)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("kit: interrupted", file=sys.stderr)
        return 130
    except (KitError, OSError, ValueError, MemoryError) as e:
        # the last line of defence: a bad input that slipped past a reader is one line, not a traceback
        if debug:
            traceback.print_exc()
        hint = "" if isinstance(e, KitError) or debug else " (--debug or KIT_DEBUG=1 shows the traceback)"
        print(f"kit: error: {one_line(e)}{hint}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
