"""kit.models.losses: values worked out by hand on tiny tensors, and focal(gamma=0) == cross-entropy."""
import math

import pytest
import torch
import torch.nn.functional as F

from kit.config import ModelConfig
from kit.errors import KitError
from kit.models.losses import LOSSES, build_loss, center_index, center_loss, focal_loss, num_centers

LOGITS = torch.tensor([[0.0, math.log(3.0)]])    # softmax = [0.25, 0.75]


def test_focal_loss_by_hand():
    assert focal_loss(LOGITS, torch.tensor([1]), 2.0).item() == pytest.approx(0.25 ** 2 * -math.log(0.75))  # 0.01798
    assert focal_loss(LOGITS, torch.tensor([0]), 2.0).item() == pytest.approx(0.75 ** 2 * math.log(4))      # 0.77979
    assert focal_loss(LOGITS, torch.tensor([0]), 0.5).item() == pytest.approx(0.75 ** 0.5 * math.log(4))


def test_focal_with_gamma_zero_is_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(7, 5), torch.randint(0, 5, (7,))
    assert focal_loss(logits, labels, 0.0).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_cross_entropy_with_label_smoothing_by_hand():
    loss = build_loss(ModelConfig(loss="ce", label_smoothing=0.2), 2)
    # (1 - 0.2) * -log 0.75 + 0.2 * mean(-log 0.25, -log 0.75)
    expected = 0.8 * -math.log(0.75) + 0.2 * 0.5 * (math.log(4) + -math.log(0.75))   # 0.39754
    assert loss({"logits": LOGITS}, torch.tensor([1])).item() == pytest.approx(expected)
    focal = build_loss(ModelConfig(loss="focal", focal_gamma=2.0), 2)
    assert focal({"logits": LOGITS}, torch.tensor([1])).item() == pytest.approx(0.25 ** 2 * -math.log(0.75))


def test_center_loss_skips_the_non_landmark_class():
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    labels = torch.tensor([0, 1, 2])                  # class 1 = non-landmark: no center
    centers = torch.tensor([[1.0, 1.0], [2.0, 2.0]])  # rows: class 0, class 2
    keep, idx = center_index(labels, nonlandmark_label=1)
    assert keep.tolist() == [True, False, True] and idx[keep].tolist() == [0, 1]
    # 1/2 * (|(0,-1)|^2 + |(1,1)|^2) / batch 3 = 0.5
    assert center_loss(emb, labels, centers, nonlandmark_label=1).item() == pytest.approx(0.5)
    # no non-landmark class: a center per class, 1/2 * (1 + 4 + 8) / 3
    all_centers = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    assert center_loss(emb, labels, all_centers).item() == pytest.approx(0.5 * (1 + 4 + 8) / 3)
    assert num_centers(3, 1) == 2 and num_centers(3, -1) == 3


def test_build_loss_adds_weighted_center_loss():
    cfg = ModelConfig(loss="ce", center_weight=0.1, nonlandmark_label=1)
    loss = build_loss(cfg, 2)
    out = {"logits": torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]),
           "embeddings": torch.tensor([[1.0, 0.0], [5.0, 5.0]]), "centers": torch.tensor([[1.0, 2.0]])}
    ce = (-math.log(0.25) - math.log(0.5)) / 2
    center = 0.5 * 4 / 2          # only sample 0 (landmark class 0): |(0,-2)|^2 = 4
    assert loss(out, torch.tensor([0, 1])).item() == pytest.approx(ce + 0.1 * center)
    with pytest.raises(KitError, match="no centers"):
        loss({"logits": out["logits"], "embeddings": out["embeddings"]}, torch.tensor([0, 1]))


def test_center_loss_gradient_pulls_embeddings_to_centers():
    emb = torch.tensor([[2.0, 0.0]], requires_grad=True)
    centers = torch.zeros(1, 2, requires_grad=True)
    center_loss(emb, torch.tensor([0]), centers).backward()
    assert emb.grad.tolist() == [[2.0, 0.0]] and centers.grad.tolist() == [[-2.0, 0.0]]


def test_unknown_loss_lists_valid_names():
    with pytest.raises(KitError, match="unknown loss 'triplet' \\(valid: ce, focal\\)"):
        build_loss(ModelConfig(loss="triplet"), 3)
    with pytest.raises(KitError, match="nonlandmark_label=5"):
        build_loss(ModelConfig(center_weight=1.0, nonlandmark_label=5), 3)
    assert list(LOSSES) == ["ce", "focal"]
