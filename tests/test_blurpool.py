"""2x2 averages in cascade compute exactly Zhang's blur pooling; the network keeps the package's state."""

import antialiased_cnns
import pytest
import torch
from antialiased_cnns.blurpool import BlurPool

from shapeshift.models.blurpool import CascadeBlurPool, use_cascade_blur
from shapeshift.models.resnet import antialiased_resnet18


@pytest.mark.parametrize("filt_size", range(1, 8))
@pytest.mark.parametrize("pad_type", ["reflect", "zero"])
def test_cascade_equals_the_package_blur_pool_forward_and_backward(filt_size, pad_type):
    torch.manual_seed(filt_size)
    reference = BlurPool(6, pad_type=pad_type, filt_size=filt_size, stride=2)
    cascade = use_cascade_blur(
        torch.nn.Sequential(BlurPool(6, pad_type=pad_type, filt_size=filt_size, stride=2))
    )[0]
    assert isinstance(cascade, CascadeBlurPool)
    x = torch.randn(3, 6, 17, 16, dtype=torch.float64)  # odd and even sides
    x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out_new = reference.double()(x_ref), cascade.double()(x_new)
    assert out_new.shape == out_ref.shape
    torch.testing.assert_close(out_new, out_ref, rtol=0, atol=1e-12)
    weights = torch.randn_like(out_ref)
    (out_ref * weights).sum().backward()
    (out_new * weights).sum().backward()
    torch.testing.assert_close(x_new.grad, x_ref.grad, rtol=0, atol=1e-12)


def test_cascade_under_bf16_autocast_matches_within_bf16_rounding():
    # CPU autocast runs reflection padding in fp32, so the cascade after it does too; the input is bf16.
    torch.manual_seed(0)
    reference = BlurPool(8, filt_size=4)
    cascade = use_cascade_blur(torch.nn.Sequential(BlurPool(8, filt_size=4)))[0]
    x = torch.randn(2, 8, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cascade(x.bfloat16())
    torch.testing.assert_close(out.float(), reference(x), rtol=2e-2, atol=2e-2)


def test_antialiased_resnet_keeps_the_package_state_dict_and_outputs():
    torch.manual_seed(0)
    package = antialiased_cnns.resnet18(pretrained=False, filter_size=4, num_classes=2).eval()
    ours = antialiased_resnet18(num_classes=2, filter_size=4).eval()
    assert not any(type(m) is BlurPool for m in ours.modules())
    assert sum(isinstance(m, CascadeBlurPool) for m in ours.modules()) == 7
    # Checkpoints written before the swap load unchanged, and give the same predictions.
    ours.load_state_dict(package.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), package(x), rtol=1e-4, atol=1e-5)
