"""Padding modes reaching every padded convolution and changing the output, and odd input sizes."""

import pytest
import torch
from torch import nn

from shapeshift.config import PADDING_MODES, ConfigError, validate
from shapeshift.pipeline import build_backbone
from tests.helpers import ARCHS


def padded_convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_padding_mode_reaches_every_padded_convolution(arch, mode, cfg_factory):
    cfg = cfg_factory(f"arch={arch}", f"arch.padding_mode={mode}", "data.image_size=40")
    net = build_backbone(cfg, arch)  # runs a forward pass: every mode works at this size
    convs = padded_convs(net)
    assert convs and all(c.padding_mode == mode for c in convs), [c.padding_mode for c in convs]


def test_padding_changes_what_the_network_computes(cfg_factory):
    x = torch.zeros(1, 3, 32, 32)
    x[..., :8, 24:] = 1.0  # a bright patch at the top-right border
    outs = {}
    for mode in ("zeros", "circular"):
        torch.manual_seed(0)
        outs[mode] = build_backbone(
            cfg_factory("arch=cnn", f"arch.padding_mode={mode}", "data.image_size=32"), "cnn"
        ).eval()(x)
    assert not torch.allclose(outs["zeros"], outs["circular"])  # same weights, another border


def test_an_unknown_padding_mode_fails_at_validation(cfg_factory):
    with pytest.raises(ConfigError, match="arch.padding_mode must be one of zeros, reflect"):
        validate(cfg_factory("arch=cnn", "arch.padding_mode=mirror"))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [63, 65])
def test_odd_input_sizes(arch, size, cfg_factory):
    cfg = cfg_factory(f"arch={arch}", f"data.image_size={size}")
    out = build_backbone(cfg, arch).eval()(torch.zeros(2, 3, size, size))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
