"""One module per CLI sub-command, each with `add_parser(subparsers)` (kit/cli.py); shared flags mean the same
everywhere (docs/CONTRACTS.md), and a renamed flag keeps its old name for one release (`renamed`)."""
from __future__ import annotations

import dataclasses

from kit.registry import deprecated

DEFAULT_CONFIG = "top2k"


def add_config_arguments(p, fold_help: str = "fold N (default 0)") -> None:
    """--config (preset or YAML, default top2k), --fold N and trailing key=value overrides."""
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"preset name (kit/configs) or YAML file (default {DEFAULT_CONFIG})")
    p.add_argument("--fold", type=int, default=0, help=fold_help)
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. `optim.lr=0.02` `data.image_size=96` `model.head=arcface` (default: none)")
    p.epilog = config_names   # called when help is shown (see kit.cli.Parser)


def add_retrieval_arguments(p) -> None:
    """The files and kNN search switches of `kit retrieve` and `kit rerank` (the same names and defaults)."""
    from kit.inference.retrieval import AGGREGATIONS

    p.add_argument("--index", required=True, nargs="+",
                   help="prediction .npz file(s) with embeddings of labelled images")
    p.add_argument("--labels", required=True, help="CSV with id,landmark_id for the index images")
    p.add_argument("--query", required=True, help="prediction .npz with embeddings of the images to label")
    p.add_argument("--out", required=True, help="prediction .npz to write")
    p.add_argument("--submission", help="also write the top-1 as a submission CSV (default: none)")
    p.add_argument("--topk", type=int, default=5, help="predictions kept per image")
    p.add_argument("--agg", choices=AGGREGATIONS, default="max",
                   help="knn: class vote = max (its best neighbour's) or sum of its neighbours'")
    p.add_argument("--qe", type=int, default=0, help="knn: alpha query expansion with K neighbours (0 = off)")
    p.add_argument("--qe-alpha", type=float, default=3.0, help="knn: QE weight = sim ** alpha")
    p.add_argument("--dba", type=int, default=0,
                   help="knn: database-side augmentation with K neighbours (0 = off)")
    p.add_argument("--dba-alpha", type=float, default=3.0, help="knn: DBA weight = sim ** alpha")


def dataclass_from_flags(cls, args):
    """A settings dataclass from the flags named as its fields (an unset flag: the field's default)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names and v is not None})


def write_top1(pred, path) -> None:
    """--submission PATH: the top-1 of `pred` as a submission CSV (nothing without the flag)."""
    if path:
        from kit.submission import write_submission

        write_submission(pred, path)
        print(f"wrote {path}")


def config_names() -> str:
    """Valid names of each registry config key, for --help (called only then: the registries pull in torch)."""
    from kit.config import registries
    from kit.models.backbones import PACKAGED_WEIGHTS

    names = {"model.backbone (weights shipped; any timm name with model.weights=timm)": PACKAGED_WEIGHTS,
             **registries()}
    return "valid names (key=value overrides):\n" + "\n".join(f"  {k}: {', '.join(v)}" for k, v in names.items())


def renamed(p, **old_to_new: str) -> None:
    """Old flag names kept one release: hidden, one deprecation line, then the new flag: renamed(p, data="--data-dir")."""
    for key, new in old_to_new.items():
        old, action = "--" + key.replace("_", "-"), p._option_string_actions[new]
        p._option_string_actions[old] = action
        if not hasattr(action, "renamed"):
            action.renamed = {}
            action.__class__ = type("Renamed", (action.__class__,), {"__call__": _renamed_call})
        action.renamed[old] = new


def _renamed_call(self, parser, namespace, values, option_string=None):
    if option_string in self.renamed:
        deprecated(option_string, self.renamed[option_string])
    super(type(self), self).__call__(parser, namespace, values, option_string)
