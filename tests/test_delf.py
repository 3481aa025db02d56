import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from kit.models.backbones import packaged_state_dict
from kit.config import load_config
from kit.localfeatures.delf.extractor import DELF_SCALES, DelfExtractor
from kit.localfeatures.delf.file import load_delf
from kit.localfeatures.delf.nets import DelfAttention, attention_pool
from kit.localfeatures.delf.train import train_delf
from kit.layout import image_path
from kit.localfeatures.matching import count_inliers
from kit.synth import make_ids, make_structure, random_homography, warp_view

SIZE = 128


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    cv2.setNumThreads(1)


def view(class_id: int, seed: int, size: int = SIZE) -> np.ndarray:
    st, mask = make_structure(class_id, 0, 256, return_mask=True)
    H = random_homography(np.random.default_rng(seed), size, 256)
    return warp_view(st, H, size, rng=None, clutter=False, mask=mask)


def test_attention_is_softplus_of_the_two_convs_and_pool_weights_features():
    torch.manual_seed(0)
    att = DelfAttention(3, hidden=4).eval()
    f = torch.randn(2, 3, 5, 6)
    s = att(f)
    assert s.shape == (2, 1, 5, 6) and bool((s > 0).all())
    ref = torch.nn.functional.softplus(att.conv2(torch.relu(att.bn(att.conv1(f)))))
    assert torch.allclose(s, ref)
    # two locations: features (3, 4) and (0, 2) -> unit (0.6, 0.8) and (0, 1); scores 1 and 0.5
    feats = torch.tensor([[3.0, 0.0], [4.0, 2.0]]).view(1, 2, 1, 2)
    scores = torch.tensor([1.0, 0.5]).view(1, 1, 1, 2)
    assert torch.allclose(attention_pool(feats, scores), torch.tensor([[0.3, 0.65]]))


def test_packaged_delf_inliers_high_on_two_views_and_near_zero_on_unrelated():
    ex = DelfExtractor(image_size=256, scales=DELF_SCALES, device="cpu")
    a, b, c = view(0, 1), view(0, 2), view(7, 3)
    fa, fb, fc = ex.extract([a, b, c])
    assert fa.descriptors.shape[1] == 112 and len(fa) <= 1000
    assert np.allclose(np.linalg.norm(fa.descriptors, axis=1), 1, atol=1e-5)
    assert fa.keypoints.min() >= 0 and fa.keypoints.max() < 256
    same, other = count_inliers(fa, fb), count_inliers(fa, fc)
    assert same >= 20 and other <= 5, (same, other)


def test_keypoints_are_receptive_field_centres():
    ex = DelfExtractor(image_size=128, scales=[1.0], margin=0.0, distinct=1.0, max_keypoints=10_000, device="cpu")
    (f,) = ex.extract([view(0, 1)])
    # stride 16 on 128 px: an 8 x 8 grid of centres (i + 0.5) * 16
    assert len(f) == 64
    assert sorted(set(np.round(f.keypoints[:, 0]).tolist())) == [8.0 + 16 * i for i in range(8)]


def tiny_dataset(root, classes: int = 2, per_class: int = 6, size: int = 64):
    ids = make_ids(np.random.default_rng(0), classes * per_class)
    rows = []
    for k, image_id in enumerate(ids):
        c = k % classes
        path = image_path(root, "train", image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(view(c, k, size), cv2.COLOR_RGB2BGR))
        rows.append({"id": image_id, "landmark_id": 100 + c, "label": c, "fold": int(k // classes % 3 == 0)})
    folds = root / "folds.csv"
    pd.DataFrame(rows).to_csv(folds, index=False)
    return folds


def test_train_delf_freezes_backbone_and_saves_head_and_pca(tmp_path):
    folds = tiny_dataset(tmp_path)
    cfg = load_config(None, [f"data.data_dir={tmp_path}", f"data.folds_csv={folds}", "data.image_size=64",
                             "data.batch_size=4", "data.num_workers=0", "optim.max_steps_per_epoch=2",
                             f"runs_dir={tmp_path / 'runs'}", "name=t", "device=cpu"])
    path = train_delf(cfg, fold=0, epochs=1, hidden=8, pca_dim=6, pca_images=4)
    assert path == tmp_path / "runs" / "t" / "fold0" / "delf.pt"
    state = load_delf(path)
    assert state["label_map"] == [100, 101] and state["stride"] == 16
    assert state["backbone_source"] == "packaged:tf_efficientnet_lite0"
    packaged = packaged_state_dict("tf_efficientnet_lite0")
    assert all(torch.equal(v, packaged[k]) for k, v in state["backbone"].items() if k in packaged)  # frozen
    assert state["head"]["attention.conv1.weight"].shape == (8, 112, 1, 1)
    pca = state["pca"]  # plain tensors: loads weights-only
    assert set(pca) == {"mean", "components", "scale"} and pca["components"].shape == (6, 112)
    assert not torch.all(pca["scale"] == 1)  # whitened
    run = tmp_path / "runs" / "t" / "fold0" / "delf"  # kit.train.loop's checkpoints and metrics
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file() and len(pd.read_csv(run / "metrics.csv")) == 1
    mean, std = state["mean_std"]  # the loader's Normalize: extraction normalises as training did
    # lite weights were trained on inputs scaled to [-1, 1]: mean = std = 0.5, not ImageNet's
    assert np.allclose(mean, 0.5) and np.allclose(std, 0.5)
    ex = DelfExtractor(path, image_size=64, device="cpu")
    (f,) = ex.extract([view(0, 99, 64)])
    assert f.descriptors.shape[1] == 6
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-5)
    train_delf(cfg, fold=0, epochs=2, hidden=8, pca_dim=0, resume=True)  # one more epoch, from last.pt
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2] and load_delf(path)["pca"] is None
