"""kit.train.loop / checkpoint / inference / schedule: learning, reload, exact resume, DDP == single process."""
from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch

import kit.train.loop
from kit.models.checkpoint import load_checkpoint, load_model
from kit.config import load_config
from kit.errors import KitError
from kit.inference.engine import get_tta, predict_loader
from kit.predictions import load_predictions
from kit.train.loop import seed_everything, train
from kit.train.optim import build_optimizer, cosine_factor, lr_factor, step_factor
from test_data import make_gldv2

torch.set_num_threads(1)

# GroupNorm backbone, no FC-BN neck: BatchNorm running statistics after a dozen steps of batch 4 make
# eval-mode outputs meaningless; BN itself is exercised in test_head_stage_keeps_backbone_frozen.
TINY = ["model.backbone=test_efficientnet_gn", "model.weights=none", "model.embedding_dim=0", "data.image_size=32",
        "data.batch_size=4", "data.num_workers=0", "data.augment=none", "optim.lr=0.01", "device=cpu"]


def tiny_cfg(root, *extra):
    return load_config(None, [f"data.data_dir={root}", f"data.folds_csv={root / 'folds.csv'}",
                              f"runs_dir={root / 'runs'}", f"predictions_dir={root / 'subs'}", *TINY, *extra])


def state(run_dir, name="last.pt"):
    return load_checkpoint(run_dir, name)


def test_schedules_by_hand():
    assert cosine_factor(0, 10, warmup_steps=2) == 0.5
    assert cosine_factor(1, 10, warmup_steps=2) == 1.0
    assert cosine_factor(2, 10, warmup_steps=2) == 1.0
    assert cosine_factor(6, 10, warmup_steps=2) == pytest.approx(0.5)          # half way: (1 + cos(pi/2)) / 2
    assert cosine_factor(4, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.4)))
    assert cosine_factor(10, 10) == pytest.approx(0.0)
    assert step_factor(19, steps_per_epoch=10, step_size=2) == 1.0
    assert step_factor(25, steps_per_epoch=10, step_size=2) == pytest.approx(0.1)
    assert step_factor(45, steps_per_epoch=10, step_size=2) == pytest.approx(0.01)
    assert lr_factor(3, "step", steps_per_epoch=10, epochs=5, warmup_epochs=0.5, step_size=1) == pytest.approx(0.8)
    with pytest.raises(KitError, match="valid: cosine, step"):
        lr_factor(0, "linear", 1, 1)


def test_per_part_learning_rates(tmp_path):
    from kit.models.model import build_model

    cfg = tiny_cfg(tmp_path, "optim.lr=0.05", "optim.lr_backbone=0.1", "optim.lr_head=2", "optim.optimizer=adamw")
    opt = build_optimizer(build_model(cfg.model, 3), cfg.optim)
    assert isinstance(opt, torch.optim.AdamW)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == pytest.approx(
        {"backbone": 0.005, "neck": 0.05, "head": 0.1})
    cfg.optim.optimizer = "lbfgs"
    with pytest.raises(KitError, match="valid: sgd, adamw"):
        build_optimizer(build_model(cfg.model, 3), cfg.optim)


def test_layer_decay_gives_each_backbone_block_its_own_lr(tmp_path):
    from kit.models.model import build_model

    cfg = tiny_cfg(tmp_path, "optim.lr=0.1", "optim.lr_backbone=0.1", "optim.layer_decay=0.5",
                   "optim.optimizer=adamw", "optim.weight_decay=0.01")
    model = build_model(cfg.model, 3)
    opt = build_optimizer(model, cfg.optim)
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert len(lr) == sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    named = dict(model.backbone.named_parameters())
    # test_efficientnet_gn (timm's group_matcher): stem, blocks 0-4, conv_head joins the last block = 6
    # layers; layer i gets 0.1 * 0.1 * 0.5 ** (5 - i)
    assert lr[id(named["conv_stem.weight"])] == pytest.approx(0.01 * 0.5 ** 5)
    assert lr[id(named["blocks.2.0.conv_exp.weight"])] == pytest.approx(0.01 * 0.5 ** 2)
    assert lr[id(named["conv_head.weight"])] == pytest.approx(0.01)
    assert wd[id(named["conv_head.weight"])] == 0.01 and wd[id(named["bn2.weight"])] == 0.0  # no decay on norms
    assert [g["lr"] for g in opt.param_groups if g["name"] == "head"] == [pytest.approx(0.1)]
    cfg.optim.layer_decay = 1.0   # off: one backbone group, as before
    assert [g["name"] for g in build_optimizer(model, cfg.optim).param_groups] == ["backbone", "neck", "head"]
    cfg.optim.layer_decay = 0.0
    with pytest.raises(KitError, match="layer_decay"):
        build_optimizer(model, cfg.optim)


def test_training_lowers_loss_and_writes_everything(tmp_path):
    make_gldv2(tmp_path, per_class=8)
    cfg = tiny_cfg(tmp_path, "optim.epochs=4", "name=learn", "predict.batch_size=4")  # = the val loader batch
    result = train(cfg, 0)
    run = tmp_path / "runs" / "learn" / "fold0"
    hist = state(run)["history"]
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert hist[-1]["val_acc"] > hist[0]["val_acc"]
    assert result["best"]["val_gap"] == max(r["val_gap"] for r in hist) > 0.7  # chance is ~0.2
    for name in ("best.pt", "last.pt", "config.yaml", "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    assert load_config(run / "config.yaml").optim.epochs == 4
    oof = load_predictions(tmp_path / "subs" / "learn" / "oof_fold0.npz")
    assert len(oof) == 12 and oof.labels.shape == (12, 5)
    assert set(oof.labels[:, 0]) <= {101, 205, 309} and (oof.labels[:, 3:] == -1).all()  # 3 classes, k=5
    assert np.allclose(np.linalg.norm(oof.embeddings, axis=1), 1.0, atol=1e-5)
    assert np.allclose(oof.scores[:, :3].sum(1), 1.0, atol=1e-5)  # softmax over the 3 classes

    # The checkpoint reloads to identical outputs: kit.inference.predict-style inference == the OOF file.
    model, loaded_cfg, label_map = load_model(run)
    assert label_map == [101, 205, 309] and loaded_cfg.name == "learn"
    from kit.data.dataset import make_loaders
    again = predict_loader(model, make_loaders(cfg, 0).val, label_map, 5, "cpu", progress=False)
    assert list(again.ids) == list(oof.ids)
    assert np.array_equal(again.labels, oof.labels)
    assert np.array_equal(again.scores, oof.scores) and np.array_equal(again.embeddings, oof.embeddings)
    hflip = predict_loader(model, make_loaders(cfg, 0).val, label_map, 5, "cpu", tta="hflip", progress=False)
    assert not np.array_equal(hflip.scores, oof.scores)
    # channels_last (kit predict's default on CPU too) is a memory layout: the same outputs to float rounding;
    # bf16 autocast (predict.precision=low) moves them a little, never the shape or the norms
    nhwc = predict_loader(model, make_loaders(cfg, 0).val, label_map, 5, "cpu", progress=False, channels_last=True)
    assert np.array_equal(nhwc.labels, oof.labels) and np.allclose(nhwc.embeddings, oof.embeddings, atol=1e-5)
    low = predict_loader(model, make_loaders(cfg, 0).val, label_map, 5, "cpu", progress=False, amp=True)
    assert np.allclose(low.embeddings, oof.embeddings, atol=0.05) and not np.array_equal(low.embeddings, oof.embeddings)
    assert np.allclose(np.linalg.norm(low.embeddings, axis=1), 1.0, atol=1e-5)
    assert len(get_tta("multiscale", scales=(0.5, 1.0))(torch.zeros(1, 3, 32, 32))) == 2


def test_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch):
    make_gldv2(tmp_path, per_class=6)
    extra = ["optim.epochs=3", "data.augment=light", "model.drop_rate=0.3", "optim.warmup_epochs=0.5"]
    train(tiny_cfg(tmp_path, *extra, "name=full"), 0)

    real, calls = kit.train.loop.train_one_epoch, []

    def killed_in_epoch_3(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(kit.train.loop, "train_one_epoch", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tmp_path, *extra, "name=cut"), 0)
    monkeypatch.setattr(kit.train.loop, "train_one_epoch", real)
    assert state(tmp_path / "runs" / "cut" / "fold0")["epoch"] == 1  # two epochs saved
    train(tiny_cfg(tmp_path, *extra, "name=cut"), 0, resume=True)

    full, cut = state(tmp_path / "runs" / "full" / "fold0"), state(tmp_path / "runs" / "cut" / "fold0")
    assert full["model"].keys() == cut["model"].keys()
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    drop = ("seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in full["history"]] == \
           [{k: v for k, v in r.items() if k not in drop} for r in cut["history"]]
    with pytest.raises(KitError, match="checkpoint not found"):
        train(tiny_cfg(tmp_path, *extra, "name=never"), 0, resume=True)


def test_head_stage_keeps_backbone_frozen(tmp_path):
    from kit.models.model import build_model

    make_gldv2(tmp_path, per_class=4)
    cfg = tiny_cfg(tmp_path, "optim.epochs=1", "optim.stages=head:1,all:1", "name=stages",
                   "model.backbone=test_efficientnet", "model.embedding_dim=16")
    train(cfg, 0)
    seed_everything(cfg.seed)
    init = build_model(cfg.model, 3).state_dict()
    trained = state(tmp_path / "runs" / "stages" / "fold0")
    assert trained["history"][0]["stage"] == "head"
    back = [k for k in init if k.startswith("backbone.")]
    assert back and all(torch.equal(init[k], trained["model"][k]) for k in back)  # incl. BN running stats
    assert not torch.equal(init["head.fc.weight"], trained["model"]["head.fc.weight"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    train(cfg, 0)


def test_ddp_two_processes_match_single_process(tmp_path):
    """GroupNorm backbone and no BN neck: BatchNorm statistics over half batches would differ by design."""
    make_gldv2(tmp_path, per_class=6)
    extra = ["optim.epochs=2",
             "data.augment=light", "optim.accum_steps=2", "optim.grad_clip=5"]
    train(tiny_cfg(tmp_path, *extra, "name=single"), 0)
    # fork: the workers inherit the imported modules (spawn would re-import torch/timm in each).
    torch.multiprocessing.start_processes(_ddp_worker, args=(2, _free_port(), tiny_cfg(tmp_path, *extra, "name=ddp")),
                                          nprocs=2, join=True, start_method="fork")
    one, two = state(tmp_path / "runs" / "single" / "fold0"), state(tmp_path / "runs" / "ddp" / "fold0")
    diffs = [float((one["model"][k] - two["model"][k]).abs().max()) for k in one["model"]]
    assert max(diffs) < 1e-5
    from kit.models.model import build_model
    cfg = tiny_cfg(tmp_path, *extra)
    seed_everything(cfg.seed)
    init = build_model(cfg.model, 3).state_dict()
    assert max(float((one["model"][k] - init[k]).abs().max()) for k in init) > 1e-3  # it did train
    assert one["history"][-1]["train_loss"] == pytest.approx(two["history"][-1]["train_loss"], rel=1e-5)
    assert one["history"][-1]["val_gap"] == two["history"][-1]["val_gap"]
    assert (tmp_path / "subs" / "ddp" / "oof_fold0.npz").is_file()


def test_retrieval_preset_learns_the_head_and_leaves_the_backbone_as_it_was(tmp_path):
    """`--config retrieval`: sub-center ArcFace with dynamic margins on a frozen backbone."""
    from kit.models.model import build_model

    make_gldv2(tmp_path, per_class=8)
    cfg = load_config("retrieval", [f"data.data_dir={tmp_path}", f"data.folds_csv={tmp_path / 'folds.csv'}",
                                    f"runs_dir={tmp_path / 'runs'}", f"predictions_dir={tmp_path / 'subs'}", *TINY,
                                    "model.embedding_dim=16", "optim.epochs=3", "optim.lr=0.01", "predict.batch_size=4"])
    assert cfg.model.head == "subcenter_arcface" and cfg.model.arc_dynamic and cfg.optim.stages.startswith("head:")
    train(cfg, 0)
    hist = state(cfg.run_dir(0))["history"]
    assert [r["stage"] for r in hist] == ["head"] * 3 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    seed_everything(cfg.seed)   # train() builds its model right after the same call: same initial backbone
    initial = build_model(cfg.model, 3, [4, 4, 4]).backbone.state_dict()
    trained = {k[len("backbone."):]: v for k, v in state(cfg.run_dir(0))["model"].items() if k.startswith("backbone.")}
    assert trained.keys() == initial.keys() and all(torch.equal(trained[k], initial[k]) for k in initial)
    head = state(cfg.run_dir(0))["model"]["head.weight"]
    assert head.shape == (3 * 3, 16)   # 3 classes x 3 sub-centers
