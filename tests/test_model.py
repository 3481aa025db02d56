"""kit.models.model: build from config, outputs, parameter groups, stage fine-tuning, channels_last, autocast."""
import pytest
import torch
from torch import nn

from kit.config import ModelConfig
from kit.errors import KitError
from kit.models.losses import build_loss
from kit.models.model import build_model, last_block_names, parse_stages, set_trainable, stage_at

torch.set_num_threads(1)
LITE = dict(backbone="tf_efficientnet_lite0", weights="none")


def images(n=2, size=64, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("head", ["linear", "arcface", "subcenter_arcface"])
def test_forward_shapes(head):
    model = build_model(ModelConfig(head=head, **LITE), 5).eval()
    out = model(images(), torch.tensor([0, 4]))
    assert out["embeddings"].shape == (2, 512) and out["logits"].shape == (2, 5)
    assert out["embeddings"].dtype == out["logits"].dtype == torch.float32


def test_no_neck_gives_pooled_features_and_avg_pool_is_mean():
    model = build_model(ModelConfig(embedding_dim=0, pool="avg", **LITE), 3).eval()
    x = images()
    out = model(x)
    assert out["embeddings"].shape == (2, 1280)
    assert torch.allclose(out["embeddings"], model.backbone(x).mean(dim=(2, 3)), atol=1e-6)


def test_param_groups_partition_the_model():
    model = build_model(ModelConfig(se_attention=True, center_weight=0.01, nonlandmark_label=0, **LITE), 4)
    groups = model.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())          # each parameter exactly once
    assert any(p is model.pool.p for p in groups["neck"])                    # GeM p goes with the neck
    assert any(p is model.centers for p in groups["head"]) and model.centers.shape == (3, 512)
    assert len(groups["backbone"]) == len(list(model.backbone.parameters()))
    assert "centers" in model(images())


def test_unknown_names_list_valid_ones():
    for key, match in [("head", "valid: linear, arcface"), ("pool", "valid: gem, avg"),
                       ("backbone", "unknown timm model")]:
        with pytest.raises(KitError, match=match):
            build_model(ModelConfig(**{**LITE, key: "nope"}), 3)


def test_stage_fine_tuning_freezes_and_unfreezes():
    model = build_model(ModelConfig(**LITE), 3)
    set_trainable(model, "head").train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.param_groups()["neck"] + model.param_groups()["head"])
    assert not model.backbone.bn1.training and model.neck.bn.training        # frozen BN keeps its statistics
    before = model.backbone.bn2.running_mean.clone()
    model(images())
    assert torch.equal(model.backbone.bn2.running_mean, before)

    set_trainable(model, "last")
    grad = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert grad == set(last_block_names(model.backbone))
    assert "blocks.3.0.conv_pw.weight" in grad and "conv_head.weight" in grad       # stride-16 stage onwards
    assert "blocks.2.0.conv_pw.weight" not in grad and "conv_stem.weight" not in grad
    assert model.backbone.blocks[6][0].bn1.training and not model.backbone.bn1.training

    set_trainable(model, "all")
    assert all(p.requires_grad for p in model.parameters()) and model.backbone.bn1.training
    with pytest.raises(KitError, match="unknown stage 'middle'"):
        set_trainable(model, "middle")


def test_last_stages_of_a_resnet_are_layer3_and_layer4():
    model = build_model(ModelConfig(backbone="resnet18", weights="none", embedding_dim=0), 3)
    names = last_block_names(model.backbone)
    assert names[0].startswith("layer3.") and names[-1].startswith("layer4.")
    assert not any(n.startswith(("layer2.", "conv1", "bn1")) for n in names)


def test_parse_stages():
    assert parse_stages("head:1, last:2,all:7") == [("head", 1), ("last", 2), ("all", 7)]
    assert parse_stages("") == []
    assert [stage_at("head:1,last:2", e) for e in range(5)] == ["head", "last", "last", "all", "all"]
    with pytest.raises(KitError, match="'head=1' is not STAGE:EPOCHS"):
        parse_stages("head=1")


def test_channels_last_and_cpu_autocast_match_plain_forward():
    model = build_model(ModelConfig(head="arcface", **LITE), 4).eval()
    x = images()
    with torch.no_grad():
        ref = model(x)["embeddings"]
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))["embeddings"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = model(x, torch.tensor([0, 1, 2, 3][:2]))
    assert torch.allclose(cl, ref, atol=1e-4)
    assert amp["logits"].dtype == torch.float32 and torch.isfinite(amp["logits"]).all()
    assert torch.nn.functional.cosine_similarity(amp["embeddings"].float(), ref).min() > 0.98


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("head", ["linear", "subcenter_arcface"])
def test_cuda_channels_last_fp16_autocast_trains(head):
    cfg = ModelConfig(head=head, center_weight=0.01, **LITE)
    model = build_model(cfg, 4).cuda().to(memory_format=torch.channels_last).train()
    loss_fn = build_loss(cfg, 4)
    x = images(8).cuda().to(memory_format=torch.channels_last)
    y = torch.tensor([0, 1, 2, 3] * 2).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        loss = loss_fn(model(x, y), y)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_few_head_stage_steps_lower_the_loss_and_keep_the_backbone():
    """Packaged ImageNet weights frozen (stage "head"), arcface head + center loss, fixed tiny batch."""
    torch.manual_seed(0)
    cfg = ModelConfig(head="arcface", arc_scale=10.0, center_weight=0.01, embedding_dim=64)
    model = set_trainable(build_model(cfg, 3), "head").train()
    stem = model.backbone.conv_stem.weight.clone()
    loss_fn = build_loss(cfg, 3)
    x, y = images(6), torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(4):
        loss = loss_fn(model(x, y), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]          # measured 3.33 -> 0.34
    assert torch.equal(model.backbone.conv_stem.weight, stem)


def test_se_attention_goes_before_pooling():
    model = build_model(ModelConfig(se_attention=True, **LITE), 2).eval()
    assert isinstance(model.attention, nn.Module) and model.features(images()).shape == (2, 1280, 2, 2)


def test_single_sample_batch_trains_with_running_statistics():
    model = build_model(ModelConfig(embedding_dim=16, **LITE), 3).train()
    out = model(images(1))
    assert out["embeddings"].shape == (1, 16) and torch.isfinite(out["embeddings"]).all()


def test_predict_embedding_neck_pooled_or_concat():
    from kit.inference.engine import forward_views, tta_none

    model = build_model(ModelConfig(**LITE), 4).eval()
    x = images(3)
    with torch.no_grad():
        out = model(x)
        pooled = model.pool(model.features(x))
        vec = {name: forward_views(model, x, tta_none, embedding=name)[1] for name in ("neck", "pooled", "concat")}
    assert torch.allclose(out["pooled"], pooled) and out["pooled"].shape == (3, 1280)
    assert vec["neck"].shape == (3, 512) and vec["pooled"].shape == (3, 1280) and vec["concat"].shape == (3, 1792)
    assert torch.allclose(vec["pooled"], torch.nn.functional.normalize(pooled), atol=1e-6)
    # concat: both parts unit length, so the whole is sqrt(2) before the final normalisation
    assert torch.allclose(vec["concat"][:, :1280] * 2 ** 0.5, vec["pooled"], atol=1e-5)
    assert torch.allclose(vec["concat"][:, 1280:] * 2 ** 0.5, vec["neck"], atol=1e-5)
    with pytest.raises(KitError, match="valid: neck, pooled, concat"):
        forward_views(model, x, tta_none, embedding="gem")


def test_inference_precision_choice():
    from kit.inference.engine import use_low_precision

    assert use_low_precision("auto", "cuda", amp=True) and not use_low_precision("auto", "cuda", amp=False)
    assert not use_low_precision("auto", "cpu")          # CPU bf16 is opt-in (it moves nearest neighbours)
    assert use_low_precision("low", "cpu") and not use_low_precision("fp32", "cuda")
    with pytest.raises(KitError, match=r"predict.precision: unknown 'half'"):
        use_low_precision("half", "cpu")
