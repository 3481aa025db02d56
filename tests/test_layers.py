"""kit.models.layers: GeM pooling maths, pool registry, SE attention."""
import pytest
import torch

from kit.errors import KitError
from kit.models.layers import POOLS, GeM, SEAttention, build_pool, gem


def test_gem_by_hand():
    x = torch.tensor([[[[1.0, 8.0]]]])                      # [1, 1, 1, 2]
    assert gem(x, 3.0).item() == pytest.approx((513 / 2) ** (1 / 3))   # 6.3537
    assert gem(x, 1.0).item() == pytest.approx(4.5)          # p = 1: average
    assert gem(x, 20.0).item() == pytest.approx(8 * 0.5 ** (1 / 20), rel=1e-4)  # large p: -> max
    assert gem(torch.zeros(1, 1, 2, 2), 3.0).item() == pytest.approx(1e-6, rel=1e-3)  # clamped at eps


def test_gem_learns_p_and_survives_half_precision():
    pool = GeM(p=3.0)
    x = torch.rand(2, 4, 3, 3) + 0.1
    out = pool(x)
    assert out.shape == (2, 4)
    out.sum().backward()
    assert pool.p.grad is not None and pool.p.grad.abs().item() > 0
    big = torch.full((1, 2, 2, 2), 100.0, dtype=torch.float16)   # 100^3 overflows float16
    assert gem(big, 3.0)[0].tolist() == pytest.approx([100.0, 100.0], rel=1e-4)


def test_pools_by_name():
    x = torch.tensor([[[[1.0, 3.0], [2.0, 6.0]]]])
    assert build_pool("avg")(x).item() == pytest.approx(3.0)
    assert build_pool("max")(x).item() == pytest.approx(6.0)
    assert build_pool("gem", gem_p=2.0).p.item() == pytest.approx(2.0)
    with pytest.raises(KitError, match="unknown pool 'sum' \\(valid: gem, avg, max\\)"):
        build_pool("sum")
    assert set(POOLS) == {"gem", "avg", "max"}


def test_se_attention_reweights_channels_only():
    torch.manual_seed(0)
    block = SEAttention(32)
    x = torch.rand(2, 32, 4, 4)
    y = block(x)
    gate = y / x                                          # = 1 + sigmoid(...) per channel
    assert y.shape == x.shape
    assert torch.allclose(gate, gate[:, :, :1, :1].expand_as(gate), atol=1e-5)  # constant over H, W
    assert ((gate > 1) & (gate < 2)).all()
