"""One module per CLI sub-command; each defines `add_parser(subparsers)`. See kit/cli.py.

Flag names are one scheme across commands (docs/CONTRACTS.md): the commands that read a config share
`add_config_arguments`, so `--config`, `--fold` and `key=value` overrides mean the same everywhere."""
from __future__ import annotations

DEFAULT_CONFIG = "top2k"


def add_config_arguments(p, fold_help: str = "fold N (default 0)") -> None:
    """--config (preset or YAML, default top2k), --fold N and trailing key=value overrides."""
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"preset name (kit/configs) or YAML file (default {DEFAULT_CONFIG})")
    p.add_argument("--fold", type=int, default=0, help=fold_help)
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. optim.lr=0.02 data.image_size=96 model.head=arcface")
