"""kit.models.heads: margin maths against hand values and a naive reference; heads by name."""
import math

import pytest
import torch

from kit.config import ModelConfig
from kit.errors import KitError
from kit.models.heads import (HEADS, ArcFaceHead, LinearHead, arc_margin_logits, build_head, cosine_logits,
                       dynamic_margins)


def close(t, expected, atol=1e-5):
    torch.testing.assert_close(t, torch.tensor(expected, dtype=t.dtype), atol=atol, rtol=0)


def test_dynamic_margins_by_hand():
    # n^(-1/4) = 1, 1/2, 1/3 -> scaled into [0.05, 0.3]: rarest class gets the largest margin
    m = dynamic_margins([1, 16, 81], margin_min=0.05, margin_max=0.3)
    assert m.tolist() == pytest.approx([0.3, 0.1125, 0.05])
    assert dynamic_margins([5, 5], 0.05, 0.3).tolist() == pytest.approx([0.3, 0.3])
    assert dynamic_margins([0, 1], 0.1, 0.2).tolist() == pytest.approx([0.2, 0.2])  # 0 counted as 1


def naive_arcface(cos, labels, margins, scale):
    out = cos.clone()
    for i, y in enumerate(labels.tolist()):
        m = float(margins[y])
        c = float(cos[i, y])
        theta = math.acos(c)
        out[i, y] = math.cos(theta + m) if theta + m <= math.pi else c - math.sin(math.pi - m) * m
    return out * scale


def test_arc_margin_matches_naive_reference():
    torch.manual_seed(0)
    cos = torch.rand(6, 4) * 1.8 - 0.9
    cos[5, 2] = -0.95                          # theta + m > pi: fallback branch
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    margins = torch.tensor([0.1, 0.2, 0.5, 0.3])
    got = arc_margin_logits(cos, labels, margins, 30.0)
    assert torch.allclose(got, naive_arcface(cos, labels, margins, 30.0), atol=1e-4)
    assert got[5, 2].item() == pytest.approx(30 * (-0.95 - math.sin(0.5) * 0.5), abs=1e-4)
    # a scalar margin: cos(0) -> cos(0.5) at the label, others untouched
    one = arc_margin_logits(torch.tensor([[1.0, 0.25]]), torch.tensor([0]), 0.5, 2.0)
    close(one, [[2 * math.cos(0.5), 0.5]], 1e-4)


def test_arcface_head_margin_only_with_labels():
    head = ArcFaceHead(3, 2, scale=10.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2.0, 0]]))
    emb = torch.tensor([[3.0, 0, 0], [1.0, 1.0, 0]])
    plain = head(emb)
    close(plain, [[10.0, 0.0], [10 / math.sqrt(2), 10 / math.sqrt(2)]], 1e-4)
    margin = head(emb, torch.tensor([0, 1]))
    close(margin, [[10 * math.cos(0.5), 0.0],
                                             [10 / math.sqrt(2), 10 * math.cos(math.pi / 4 + 0.5)]], 1e-4)


def test_subcenter_takes_closest_subcenter():
    head = HEADS["subcenter_arcface"](2, 2, scale=1.0, margin=0.0, subcenters=2)
    with torch.no_grad():   # class 0: sub-centers (1,0), (0,1); class 1: (-1,0), (0,-1)
        head.weight.copy_(torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0]]))
    out = head(torch.tensor([[0.0, 5.0], [-1.0, -1.0]]))
    close(out, [[1.0, 0.0], [-1 / math.sqrt(2), 1 / math.sqrt(2)]], 1e-5)


def test_cosine_logits_and_linear_head():
    cos = cosine_logits(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, -3.0]]))
    close(cos, [[1 / math.sqrt(2), 0.0]], 1e-6)
    lin = LinearHead(2, 3)
    x = torch.randn(4, 2)
    assert torch.equal(lin(x, torch.zeros(4, dtype=torch.long)), lin(x))   # labels change nothing


def test_build_head_from_config():
    cfg = ModelConfig(head="subcenter_arcface", subcenters=4, arc_dynamic=True, arc_margin=0.4, arc_margin_min=0.1)
    head = build_head(cfg, 8, 3, class_counts=[1, 16, 81])
    assert head.weight.shape == (12, 8) and head.subcenters == 4
    assert head.margins.tolist() == pytest.approx([0.4, 0.175, 0.1])
    assert build_head(ModelConfig(head="arcface"), 8, 3).margins.tolist() == pytest.approx([0.3] * 3)
    with pytest.raises(KitError, match="needs the class counts"):
        build_head(cfg, 8, 3)
    with pytest.raises(KitError, match="unknown head 'cosface' \\(valid: linear, arcface, subcenter_arcface\\)"):
        build_head(ModelConfig(head="cosface"), 8, 3)


def test_arcface_head_is_float32_under_autocast():
    head = ArcFaceHead(8, 5)
    emb = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(emb.bfloat16(), torch.tensor([0, 1, 2, 3]))
    assert out.dtype == torch.float32
    assert torch.allclose(out, head(emb.bfloat16().float(), torch.tensor([0, 1, 2, 3])), atol=1e-5)
