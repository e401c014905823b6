"""The matmul weight gradient of tiny-output convolutions equals the library's, and only runs where meant."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shapeshift.models.resnet import ResNet18, antialiased_resnet18
from shapeshift.models.small_map_conv import SmallMapConv2d, use_small_map_conv


def _pair(c_in, c_out, k, stride, padding, dtype=torch.float64):
    torch.manual_seed(0)
    reference = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False).to(dtype)
    fast = use_small_map_conv(
        nn.Sequential(nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False))
    )[0]
    fast.to(dtype).load_state_dict(reference.state_dict())
    return reference, fast


@pytest.mark.parametrize(
    ("side", "k", "stride", "padding"), [(2, 3, 1, 1), (4, 3, 2, 1), (4, 1, 2, 0), (1, 3, 1, 1)]
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_matmul_path_gives_the_library_gradients(side, k, stride, padding, channels_last):
    reference, fast = _pair(5, 7, k, stride, padding)
    x = torch.randn(3, 5, side, side, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out_new = reference(x_ref), fast(x_new)
    assert type(out_new.grad_fn).__name__.startswith("_MatmulWeightGradConv2d")  # the path under test ran
    torch.testing.assert_close(out_new, out_ref)
    g = torch.randn_like(out_ref)
    (out_ref * g).sum().backward()
    (out_new * g).sum().backward()
    torch.testing.assert_close(x_new.grad, x_ref.grad)
    torch.testing.assert_close(fast.weight.grad, reference.weight.grad)


def test_matmul_path_under_bf16_autocast_is_within_bf16_rounding_of_the_exact_gradient():
    """Against the exact (fp64) gradient of the same bf16-rounded inputs, not against the library's bf16
    kernel: that one differs by CPU (where bf16 is emulated, AVX2 without AVX512-BF16, its error was 3x
    ours: 0.204 vs 0.062 on a scale of 30)."""
    _, fast = _pair(64, 64, 3, 1, 1, dtype=torch.float32)
    x = torch.randn(16, 64, 2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(x)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    assert fast.weight.grad.dtype == torch.float32

    x64 = x.bfloat16().double()
    w64 = fast.weight.detach().bfloat16().double().requires_grad_()
    grad_out = 2 * F.conv2d(x64, w64.detach(), padding=1).bfloat16().double()  # d(out^2)/d(out), out in bf16
    (F.conv2d(x64, w64, padding=1) * grad_out).sum().backward()
    scale = w64.grad.abs().max().item()
    # bf16 keeps 8 significant bits: each rounding costs up to 2^-9 of a value, a few of them are allowed.
    torch.testing.assert_close(fast.weight.grad.double(), w64.grad, rtol=2**-7, atol=2**-7 * scale)


def test_larger_maps_and_inference_keep_the_library_kernel():
    _, fast = _pair(3, 4, 3, 1, 1)
    assert type(fast(torch.randn(2, 3, 8, 8, dtype=torch.float64)).grad_fn).__name__.startswith("Convolution")
    with torch.no_grad():
        assert fast(torch.randn(2, 3, 2, 2, dtype=torch.float64)).grad_fn is None


@pytest.mark.parametrize("build", [ResNet18, antialiased_resnet18])
def test_resnets_use_it_on_their_last_stage_only(build):
    model = build(num_classes=2)
    swapped = {name for name, m in model.named_modules() if isinstance(m, SmallMapConv2d)}
    assert not any(type(m) is nn.Conv2d for m in model.modules())
    assert {name for name in swapped if name.startswith("layer4")}  # where 64 px images give 2x2 maps
    x = torch.randn(2, 3, 64, 64)
    hits = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: hits.append(m._takes_matmul_path(i[0])))
        for m in model.modules()
        if isinstance(m, SmallMapConv2d)
    ]
    model(x).sum().backward()
    for h in hooks:
        h.remove()
    assert 0 < sum(hits) < len(hits)
