"""kit.config: registries checked when a config is read; a new registry entry is all a new choice needs."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from kit.config import load_config, registries
from kit.errors import KitError
from kit.models.heads import HEADS
from kit.models.losses import LOSSES
from kit.models.model import build_model


@pytest.mark.parametrize("override, valid", [
    ("model.head=cosface", "linear, arcface, subcenter_arcface"),
    ("model.loss=hinge", "ce, focal"),
    ("model.pool=spp", "gem, avg, max"),
    ("optim.optimizer=lamb", "sgd, adamw"),
    ("optim.schedule=poly", "cosine, step"),
    ("data.augment=heavy", "none, light, pipeline1, pipeline2, retrieval"),
    ("predict.tta=tencrop", "none, hflip, multiscale"),
    ("device=tpu", "auto, cpu, cuda"),
])
def test_unknown_names_fail_when_the_config_is_read(override, valid):
    with pytest.raises(KitError) as e:
        load_config("top2k", [override])
    key, value = override.split("=")
    assert str(e.value) == f"config: {key}={value!r} is unknown (valid: {valid})"


def test_unknown_backbone_fails_when_the_config_is_read():
    with pytest.raises(KitError, match="model.backbone='resnet9999' is not a timm model"):
        load_config(None, ["model.backbone=resnet9999"])


def test_every_preset_is_valid():
    for name in ("top2k", "top18k"):
        cfg = load_config(name)
        assert cfg.model.head in HEADS
    assert set(registries()) >= {"model.head", "model.loss", "model.pool", "optim.optimizer", "data.augment"}


class ToyHead(nn.Module):
    """A head added by a user: one registry entry, nothing else edited."""

    def __init__(self, d, n):
        super().__init__()
        self.fc = nn.Linear(d, n, bias=False)

    @classmethod
    def from_config(cls, model_cfg, in_features, num_classes, class_counts=None):
        return cls(in_features, num_classes)

    def forward(self, embeddings, labels=None):
        return 2 * self.fc(embeddings)


class ToyLoss(nn.Module):
    @classmethod
    def from_config(cls, model_cfg):
        return cls()

    def forward(self, outputs, labels):
        return outputs["logits"].sum() * 0


def test_a_registry_entry_is_enough(monkeypatch):
    monkeypatch.setitem(HEADS, "toy", ToyHead)
    monkeypatch.setitem(LOSSES, "toy", ToyLoss)
    cfg = load_config(None, ["model.head=toy", "model.loss=toy", "model.weights=none", "model.embedding_dim=8"])
    model = build_model(cfg.model, num_classes=3).eval()
    assert isinstance(model.head, ToyHead)
    out = model(torch.zeros(2, 3, 64, 64))
    assert out["logits"].shape == (2, 3)


def test_cli_imports_only_the_command_it_runs(tmp_path):
    """`kit folds` builds its parser alone (not every command module) and, touching no image, imports neither
    cv2 nor joblib (together ~75 ms of a ~1 s command at GLDv2 size); `kit --help` still lists every command."""
    (tmp_path / "train.csv").write_text("id,url,landmark_id\n" + "".join(f"a{i},u,{i % 3}\n" for i in range(30)))
    code = ("import sys, kit.cli; rc = kit.cli.main(['folds', '--labels', 'train.csv', '--min-images', '1', "
            "'--out', 'f.csv']); print(rc, sorted(m for m in sys.modules if m in ('cv2', 'joblib') "
            "or m.startswith('kit.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 ['kit.commands.folds']"
    assert (tmp_path / "f.csv").read_text().startswith("id,landmark_id,label,fold\n")
    from kit.cli import build_parser

    listed = {line.split()[0] for line in build_parser().format_help().splitlines() if line.startswith("    ")}
    assert {"folds", "train", "to-submission", "train-delf", "score"} <= listed


def test_cli_help_imports_no_heavy_library():
    code = ("import sys, kit.cli; kit.cli.build_parser(); "
            "print(sorted(m for m in ('pandas', 'torch', 'cv2', 'timm', 'albumentations') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
