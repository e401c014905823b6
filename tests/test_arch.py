"""Every `conf/arch/*.yaml` is a working architecture: a new file is tested with no code change."""

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from shapeshift.config.errors import ConfigError
from shapeshift.engine.pipeline import build_backbone
from shapeshift.models.classifier import Classifier
from shapeshift.models.resnet import ResNet18
from tests.helpers import ARCHS


@pytest.mark.parametrize("arch", ARCHS)
def test_arch_forward_backward_and_one_training_step(arch, cfg_factory):
    cfg = cfg_factory(f"arch={arch}", "data.image_size=64")
    torch.manual_seed(0)
    backbone = build_backbone(cfg, arch)
    x = torch.randn(4, 3, 64, 64)
    logits = backbone(x)
    assert logits.shape == (4, cfg.data.num_classes)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 0, 1])).backward()
    for name, p in backbone.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{arch}: no gradient for {name}"
        assert p.grad.abs().sum() > 0, f"{arch}: zero gradient for {name}"

    model = Classifier(build_backbone(cfg, arch), cfg.data.num_classes, instantiate(cfg.optimizer))
    before = [p.detach().clone() for p in model.parameters()]
    data = TensorDataset(torch.randn(8, 3, 64, 64), torch.tensor([0, 1] * 4))
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(data, batch_size=8))
    assert trainer.global_step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_resnet18_matches_torchvision_parameter_count():
    assert sum(p.numel() for p in ResNet18(num_classes=2).parameters()) == 11_177_538


def test_antialiased_resnet_rejects_small_images_at_start(cfg_factory):
    cfg = cfg_factory("arch=resnet18_aa", "data.image_size=32")
    with pytest.raises(ConfigError, match=r"resnet18_aa.*at least 36 px.*image_size=32"):
        build_backbone(cfg, "resnet18_aa")


def test_a_shape_problem_is_reported_at_start(cfg_factory):
    cfg = cfg_factory("arch=cnn", "data.image_size=64")
    cfg.arch.image_size = 32  # the linear layer now expects a smaller input than the data gives
    with pytest.raises(ConfigError, match="cannot take 64 px images"):
        build_backbone(cfg, "cnn")
