"""Padding modes reaching every padded convolution and changing the output, and odd input sizes."""

import pytest
import torch
from torch import nn

from shapeshift.config.errors import ConfigError
from shapeshift.config.schema import PADDING_MODES
from shapeshift.config.validation import validate
from shapeshift.engine.pipeline import build_backbone
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


def roll_invariance_gap(net: nn.Module, shift: int, size: int = 64) -> float:
    """Largest change of the logits when the whole input is rolled right and down by `shift` px, relative
    to the logits' own spread over random images."""
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(x)
        return ((net(torch.roll(x, (shift, shift), (2, 3))) - out).abs().max() / out.std()).item()


@pytest.mark.parametrize(("arch", "shift"), [("gap", 16), ("resnet18", 32), ("resnet18_aa", 32)])
def test_circular_padding_reaches_every_layer_so_the_network_is_shift_invariant(arch, shift, cfg_factory):
    """With every padded layer circular, a network that ends in global average pooling gives the same
    logits for an image rolled by a multiple of its total stride: no layer sees an edge. A max-pool left
    with its implicit edge (how `padding_mode` used to leave it) breaks this."""
    torch.manual_seed(0)
    net = build_backbone(cfg_factory(f"arch={arch}", "arch.padding_mode=circular"), arch).eval()
    assert roll_invariance_gap(net, shift) < 1e-4
    torch.manual_seed(0)
    zeros = build_backbone(cfg_factory(f"arch={arch}"), arch).eval()
    assert roll_invariance_gap(zeros, shift) > 1e-3  # the default network does see the edge
    if arch == "resnet18":
        net.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        assert roll_invariance_gap(net, shift) > 1e-3


def test_circular_resnet18_is_not_invariant_to_sub_stride_shifts(cfg_factory):
    """What circular padding does not give: shifts between the multiples of the stride move the logits
    (the aliasing that anti-aliasing targets), so `position s5` at 64 px is the one shift it guarantees."""
    torch.manual_seed(0)
    net = build_backbone(cfg_factory("arch=resnet18", "arch.padding_mode=circular"), "resnet18").eval()
    assert min(roll_invariance_gap(net, k) for k in (1, 8, 16, 31)) > 1e-3
