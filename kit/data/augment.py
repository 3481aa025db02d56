"""Albumentations pipelines by name: uint8 HWC RGB image -> normalised float CHW tensor."""
from __future__ import annotations

import albumentations as A
from albumentations.pytorch import ToTensorV2
from timm.data import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN, IMAGENET_DEFAULT_STD as IMAGENET_STD

from kit.errors import KitError
from kit.models.backbones import backbone_mean_std
from kit.registry import Registry


def _none(size: int, train: bool) -> list:
    return [A.Resize(size, size)]


def _light(size: int, train: bool) -> list:
    if not train:
        return [A.Resize(size, size)]
    return [A.Resize(size, size), A.HorizontalFlip(p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=0.8)]


def _flips_and_colour(brightness_p: float) -> list:
    """The flips and photometric steps report 003's two pipelines share."""
    return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.1), A.HueSaturationValue(),
            A.RandomBrightnessContrast(p=brightness_p), A.CLAHE(), A.Blur()]


def _pipeline1(size: int, train: bool) -> list:
    if not train:
        return [A.Resize(size, size)]
    return [A.RandomResizedCrop(size=(size, size)), *_flips_and_colour(0.2),
            A.ImageCompression(quality_range=(99, 100))]


def _pipeline2(size: int, train: bool) -> list:
    resize = A.SmallestMaxSize(max_size=round(size * 288 / 256))
    if not train:
        return [resize, A.CenterCrop(size, size)]
    return [resize, A.RandomCrop(size, size), *_flips_and_colour(0.3), A.Sharpen(alpha=(0.1, 0.3), p=0.2)]


def _retrieval(size: int, train: bool) -> list:
    """Embedding training (GLR 2020/21): random crop of 40-100% of the photo, flip and colour; validation: whole photo."""
    if not train:
        return [A.Resize(size, size)]
    return [A.RandomResizedCrop(size=(size, size), scale=(0.4, 1.0), ratio=(0.75, 4 / 3)), A.HorizontalFlip(p=0.5),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.8), A.ToGray(p=0.05)]


PIPELINES = Registry("pipeline", {"none": _none, "light": _light, "pipeline1": _pipeline1, "pipeline2": _pipeline2,
                                  "retrieval": _retrieval})


def build_transforms(name: str, image_size: int, train: bool, mean=None, std=None) -> A.Compose:
    """Pipeline `name` for training (or its validation form), ending in Normalize + ToTensorV2 (float32 CHW)."""
    PIPELINES.check(name, "data.augment: ")
    if int(image_size) < 8:
        raise KitError(f"data.image_size={image_size} is too small (>= 8)")
    normalize = A.Normalize(mean=tuple(mean or IMAGENET_MEAN), std=tuple(std or IMAGENET_STD))
    return A.Compose([*PIPELINES[name](int(image_size), train), normalize, ToTensorV2()], strict=True)


def transforms_for(cfg, train: bool) -> A.Compose:
    """build_transforms for a Config, normalised with the mean/std cfg.model.backbone's pretrained weights expect."""
    mean, std = backbone_mean_std(cfg.model.backbone)
    return build_transforms(cfg.data.augment, cfg.data.image_size, train, mean=mean, std=std)
