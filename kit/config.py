"""Typed experiment configs: dataclasses filled from a preset or YAML file, then `key=value` overrides."""
from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kit.errors import KitError
from kit.atomic import write_text

PRESET_DIR = Path(__file__).parent / "configs"


def within(default, lo, hi, low_open: bool = False):
    """A number field that validate_config checks: lo <= value <= hi (lo < value if low_open)."""
    return field(default=default, metadata={"range": (lo, hi, low_open)})


@dataclass
class DataConfig:
    data_dir: str = "data/synth"          # GLDv2 layout root: train.csv, train/a/b/c/<id>.jpg, test/...
    folds_csv: str = "folds/top2k.csv"    # written by `kit folds`: id, landmark_id, label, fold
    image_size: int = within(128, 16, 8192)
    augment: str = "light"                # name in kit.data.augment.PIPELINES
    batch_size: int = within(64, 1, 1 << 20)
    num_workers: int = within(2, 0, 1024)
    strict: bool = False                  # missing/corrupt/oversized images: error instead of skip
    max_pixels: int = within(50_000_000, 1, 1 << 40)  # images whose header claims more pixels are not decoded (skipped)


@dataclass
class ModelConfig:
    backbone: str = "tf_efficientnet_lite0"
    weights: str = "packaged"             # packaged | timm | none | path to a local weights file
    pool: str = "gem"                     # gem | avg
    gem_p: float = within(3.0, 0.0, 100.0, low_open=True)
    embedding_dim: int = within(512, 0, 1 << 16)  # FC -> BN neck; 0 = no neck
    head: str = "linear"                  # name in kit.models.heads.HEADS
    loss: str = "ce"                      # name in kit.models.losses.LOSSES
    label_smoothing: float = within(0.0, 0.0, 1.0)
    focal_gamma: float = within(2.0, 0.0, 100.0)
    arc_scale: float = within(30.0, 0.0, 1e4, low_open=True)
    arc_margin: float = 0.3
    arc_margin_min: float = 0.05          # dynamic margins: rare classes get larger margins
    arc_dynamic: bool = False
    subcenters: int = within(3, 1, 1024)
    center_weight: float = within(0.0, 0.0, 1e6)  # center loss weight (Mail.ru); 0 = off
    nonlandmark_label: int = -1           # label index of a non-landmark class (center loss skips it)
    se_attention: bool = False
    drop_rate: float = within(0.0, 0.0, 1.0)


@dataclass
class OptimConfig:
    optimizer: str = "sgd"                # sgd | adamw
    lr: float = within(0.01, 0.0, 1e3, low_open=True)
    momentum: float = within(0.9, 0.0, 1.0)
    weight_decay: float = within(1e-4, 0.0, 1e3)
    schedule: str = "cosine"              # cosine | step
    warmup_epochs: float = within(0.0, 0.0, 1e6)
    step_size: int = within(10, 1, 1 << 30)
    step_gamma: float = within(0.1, 0.0, 1e3, low_open=True)
    lr_backbone: float = within(1.0, 0.0, 1e3)  # multipliers of lr per part (Mail.ru)
    lr_neck: float = within(1.0, 0.0, 1e3)
    lr_head: float = within(1.0, 0.0, 1e3)
    layer_decay: float = 1.0              # backbone layer-wise lr decay per block (timm groups); 1 = off
    epochs: int = within(10, 1, 1 << 20)
    accum_steps: int = within(1, 1, 1 << 20)
    amp: bool = True                      # used on CUDA only
    channels_last: bool = True
    stages: str = ""                      # report 001's 3-stage fine-tuning, e.g. "head:1,last:2,all:7"
    max_steps_per_epoch: int = within(0, 0, 1 << 40)  # 0 = full epoch; >0 caps steps (quick runs, tests)
    grad_clip: float = within(0.0, 0.0, 1e9)


@dataclass
class PredictConfig:
    tta: str = "none"                     # none | hflip | multiscale
    scales: list[float] = field(default_factory=lambda: [0.707, 1.0, 1.414])
    topk: int = within(5, 1, 1 << 16)
    batch_size: int = within(128, 1, 1 << 20)
    embedding: str = "neck"               # saved embedding: neck | pooled (backbone GeM) | concat (both)
    precision: str = "auto"               # auto: fp16 on CUDA (optim.amp), fp32 on CPU | fp32 | low: also bf16
                                          # on CPU (2.8x on AMX here, but 1-NN flips on 6% of queries: opt-in)


@dataclass
class Config:
    name: str = "exp"
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda
    runs_dir: str = "runs"                # checkpoints, logs: runs/<name>/fold<N>/
    predictions_dir: str = "predictions"  # prediction files: predictions/<name>/<split>_fold<N>.npz
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)

    def run_dir(self, fold: int) -> Path:
        return Path(self.runs_dir) / self.name / f"fold{fold}"


BOOLS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(("0", "false", "no", "off"), False)


def _coerce(value, tp, key: str):
    """Convert a YAML/CLI value to the field's declared type, or raise a KitError naming the key."""
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            return BOOLS[value.lower()] if isinstance(value, str) else bool(value)
        if tp in (int, float, str):
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return tp(value)
        if origin is list:
            (inner,) = typing.get_args(tp)
            if isinstance(value, str):
                value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
            return [_coerce(v, inner, key) for v in value]
    except (TypeError, ValueError, KeyError):
        raise KitError(f"config: {key}={value!r} is not a valid {getattr(tp, '__name__', tp)}") from None
    return value


RENAMED = {"submissions_dir": "predictions_dir"}  # old key -> new: configs saved by older kit still load


def _fill(obj, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in (values or {}).items():
        key = RENAMED.get(f"{prefix}{key}", key)
        full = f"{prefix}{key}"
        if key not in names:
            raise KitError(f"config: unknown key '{full}' (valid: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise KitError(f"config: '{full}' is a section, give '{full}.<key>=...'")
            _fill(current, value, f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))
    return obj


def parse_overrides(overrides: list[str]) -> dict:
    """['optim.lr=0.1', 'name=x'] -> {'optim': {'lr': '0.1'}, 'name': 'x'}."""
    tree: dict = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise KitError(f"config override '{item}' is not key=value")
        *parents, last = key.strip().split(".")
        functools.reduce(lambda node, p: node.setdefault(p, {}), parents, tree)[last] = value
    return tree


def named_file(name_or_path: str, folder: Path, kind: str) -> Path:
    """A file, or a shipped name (`top2k` -> folder/top2k.yaml); else a KitError listing the shipped names."""
    for p in (Path(name_or_path), folder / f"{name_or_path}.yaml"):
        if p.is_file():
            return p
    names = ", ".join(sorted(x.stem for x in folder.glob("*.yaml")))
    raise KitError(f"{kind} '{name_or_path}': no such file or shipped {kind} (shipped: {names})")


def registries() -> dict[str, typing.Iterable[str]]:
    """Config key -> the registry its value must name (the builders use the same dicts); lazy: they pull in torch."""
    from kit.data.augment import PIPELINES
    from kit.device import DEVICES
    from kit.inference.engine import EMBEDDINGS, TTAS
    from kit.models.heads import HEADS
    from kit.models.layers import POOLS
    from kit.models.losses import LOSSES
    from kit.train.optim import OPTIMIZERS, SCHEDULES

    return {"device": DEVICES, "data.augment": PIPELINES, "model.pool": POOLS, "model.head": HEADS,
            "model.loss": LOSSES, "optim.optimizer": OPTIMIZERS, "optim.schedule": SCHEDULES, "predict.tta": TTAS,
            "predict.embedding": EMBEDDINGS}


def validate_config(cfg: Config) -> Config:
    """Numbers in their `within` ranges, registry names and the backbone checked before any data is touched."""
    import timm

    for section in ("data", "model", "optim", "predict"):
        for f in (f for f in dataclasses.fields(getattr(cfg, section)) if "range" in f.metadata):
            v, (lo, hi, low_open) = getattr(getattr(cfg, section), f.name), f.metadata["range"]
            if not ((lo < v if low_open else lo <= v) and v <= hi):  # False for NaN: values outside are typos
                low = f"> {lo}" if low_open else f">= {lo}"
                raise KitError(f"config: {section}.{f.name}={v!r} is out of range (must be {low} and <= {hi})")
    for s in cfg.predict.scales:
        if not 0.05 <= s <= 20:
            raise KitError(f"config: predict.scales contains {s!r} (each must be in 0.05..20)")
    for key, names in registries().items():
        section, _, field_name = key.rpartition(".")
        value = getattr(getattr(cfg, section) if section else cfg, field_name)
        if value not in names:
            raise KitError(f"config: {key}={value!r} is unknown (valid: {', '.join(names)})")
    if not timm.is_model(cfg.model.backbone):
        raise KitError(f"config: model.backbone={cfg.model.backbone!r} is not a timm model "
                       f"(e.g. tf_efficientnet_lite0; see timm.list_models())")
    return cfg


def load_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- preset/YAML file <- key=value overrides, then validated (validate_config)."""
    cfg = Config()
    if name_or_path:
        _fill(cfg, read_yaml_mapping(named_file(name_or_path, PRESET_DIR, "config")))
    _fill(cfg, parse_overrides(overrides or []))
    return validate_config(cfg)


def read_yaml_mapping(path: str | Path, what: str = "config sections", max_bytes: int = 0) -> dict:
    """A YAML file (safe_load) whose top level is a mapping, else KitError; over `max_bytes` (0 = any) is refused."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if max_bytes and size > max_bytes:
            raise KitError(f"{path}: {size} bytes; a small YAML file is expected (at most {max_bytes} bytes)")
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise KitError(f"{path}: not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r})") from None
    except yaml.YAMLError as e:
        raise KitError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise KitError(f"{path}: cannot read ({e.strerror or e})") from None
    if values is not None and not isinstance(values, dict):
        raise KitError(f"{path}: top level must be a mapping of {what}, not a {type(values).__name__}")
    return values or {}


def config_from_dict(values: dict) -> Config:
    """A Config from a saved dict (e.g. a checkpoint's); keys added to kit since keep their defaults."""
    return _fill(Config(), values)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> Path:
    return write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), path)
