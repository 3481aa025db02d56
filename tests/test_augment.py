"""kit.data.augment: pipelines by name, report 003's Table 1 settings, normalisation numbers."""
import warnings

import numpy as np
import pytest
import torch

from kit.data.augment import IMAGENET_MEAN, IMAGENET_STD, PIPELINES, build_transforms
from kit.errors import KitError

IMG = np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8)   # landscape, not square


def kinds(compose):
    return [type(t).__name__ for t in compose.transforms]


def find(compose, kind):
    return next(t for t in compose.transforms if type(t).__name__ == kind)


@pytest.mark.parametrize("name", sorted(PIPELINES))
@pytest.mark.parametrize("train", [True, False])
def test_every_pipeline_builds_without_warnings_and_gives_chw_float(name, train):
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # albumentations warns (not fails) on 1.x argument names
        tf = build_transforms(name, 64, train)
        out = tf(image=IMG)["image"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 64, 64)
    assert kinds(tf)[-2:] == ["Normalize", "ToTensorV2"]


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_validation_transform_is_deterministic(name):
    tf = build_transforms(name, 64, train=False)
    assert torch.equal(tf(image=IMG)["image"], tf(image=IMG)["image"])


def test_normalisation_numbers():
    grey = np.full((20, 30, 3), 128, dtype=np.uint8)
    out = build_transforms("none", 16, train=False)(image=grey)["image"]
    expected = (128 / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)   # [0.0741, 0.2052, 0.4239]
    assert out[:, 0, 0].numpy() == pytest.approx(expected, abs=1e-5)
    lite = build_transforms("none", 16, train=False, mean=(0.5,) * 3, std=(0.5,) * 3)(image=grey)["image"]
    assert lite[:, 0, 0].numpy() == pytest.approx([128 / 255 * 2 - 1] * 3, abs=1e-5)   # 0.00392


def test_pipeline1_is_report_003_table_1():
    tf = build_transforms("pipeline1", 256, train=True)
    assert kinds(tf) == ["RandomResizedCrop", "HorizontalFlip", "VerticalFlip", "HueSaturationValue",
                         "RandomBrightnessContrast", "CLAHE", "Blur", "ImageCompression", "Normalize", "ToTensorV2"]
    assert find(tf, "RandomResizedCrop").size == (256, 256)
    assert find(tf, "ImageCompression").quality_range == (99, 100)
    assert find(tf, "RandomBrightnessContrast").p == 0.2
    assert find(tf, "VerticalFlip").p < 0.5                      # "vertical flipping ... low probability"
    assert find(tf, "Normalize").mean == IMAGENET_MEAN            # A.Normalize()'s default


def test_pipeline2_is_report_003_table_1():
    tf = build_transforms("pipeline2", 256, train=True)
    assert kinds(tf) == ["SmallestMaxSize", "RandomCrop", "HorizontalFlip", "VerticalFlip", "HueSaturationValue",
                         "RandomBrightnessContrast", "CLAHE", "Blur", "Sharpen", "Normalize", "ToTensorV2"]
    assert find(tf, "SmallestMaxSize").max_size == 288
    assert (find(tf, "RandomCrop").height, find(tf, "RandomCrop").width) == (256, 256)
    assert find(tf, "RandomBrightnessContrast").p == 0.3
    sharpen = find(tf, "Sharpen")
    assert tuple(sharpen.alpha) == (0.1, 0.3) and sharpen.p == 0.2
    assert find(build_transforms("pipeline2", 128, True), "SmallestMaxSize").max_size == 144   # scales with size
    val = build_transforms("pipeline2", 256, train=False)
    assert kinds(val)[:2] == ["SmallestMaxSize", "CenterCrop"]


def test_light_is_flip_and_colour_jitter():
    tf = build_transforms("light", 64, train=True)
    assert kinds(tf) == ["Resize", "HorizontalFlip", "ColorJitter", "Normalize", "ToTensorV2"]
    assert find(tf, "HorizontalFlip").p == 0.5
    assert not any(k in kinds(tf) for k in ("VerticalFlip", "RandomResizedCrop"))   # geometry stays intact


def test_unknown_pipeline_lists_valid_names():
    with pytest.raises(KitError, match="unknown pipeline 'heavy' \\(valid: none, light, pipeline1, pipeline2, retrieval\\)"):
        build_transforms("heavy", 64, True)


def test_transforms_for_config_uses_backbone_statistics():
    from kit.data.augment import transforms_for
    from kit.config import load_config

    cfg = load_config(None, ["data.augment=pipeline2", "data.image_size=64"])
    norm = find(transforms_for(cfg, train=True), "Normalize")
    assert tuple(norm.mean) == (0.5, 0.5, 0.5) and tuple(norm.std) == (0.5, 0.5, 0.5)   # tf_efficientnet_lite0
    cfg = load_config(None, ["model.backbone=resnet18"])
    assert tuple(find(transforms_for(cfg, train=False), "Normalize").mean) == pytest.approx(IMAGENET_MEAN)


def test_retrieval_pipeline_crops_40_to_100_percent_and_validates_on_the_whole_photo():
    tf = build_transforms("retrieval", 64, train=True)
    assert kinds(tf) == ["RandomResizedCrop", "HorizontalFlip", "ColorJitter", "ToGray", "Normalize", "ToTensorV2"]
    crop = find(tf, "RandomResizedCrop")
    assert crop.size == (64, 64) and crop.scale == (0.4, 1.0)
    assert kinds(build_transforms("retrieval", 64, train=False)) == ["Resize", "Normalize", "ToTensorV2"]
