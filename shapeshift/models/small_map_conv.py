"""Convolutions whose weight gradient is one matrix product when the output map is tiny (CPU only).

At 64 px the last ResNet stage works on 2x2 maps. There oneDNN's weight-gradient kernel is slow: for
512 -> 512 channels, 3x3, batch 128 it took 39 ms in bf16 where the same product as unfold + one matmul
takes 8 ms. Whole training steps at 64 px, batch 128 (medians of interleaved rounds, with vs without):
ResNet-18 312 vs 438 ms in bf16 and 805 vs 843 ms in fp32; the anti-aliased one 511 vs 590 ms and 1028 vs
1078 ms.
Forward, input gradient and everything on GPUs stay with the library's kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shapeshift.models.replace import replace_modules

# Output positions per image up to which the matmul wins on this CPU (2x2; at 4x4 they are even in bf16
# and oneDNN is 3x faster in fp32).
MAX_OUTPUT_POSITIONS = 4


class _MatmulWeightGradConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad_out, ctx.stride, ctx.padding)
        if ctx.needs_input_grad[1]:
            n, c_out = grad_out.shape[:2]
            cols = F.unfold(x, weight.shape[2:], padding=ctx.padding, stride=ctx.stride)  # N, C_in*k*k, L
            # Sum over images and positions in one product: (C_out, N*L) @ (N*L, C_in*k*k).
            grad_w = grad_out.reshape(n, c_out, -1).transpose(0, 1).reshape(c_out, -1) @ cols.transpose(
                1, 2
            ).reshape(-1, cols.shape[1])
            grad_w = grad_w.view(weight.shape)
        return grad_x, grad_w, None, None


class SmallMapConv2d(nn.Conv2d):
    """`nn.Conv2d` (same parameters and state dict) that trains faster on CPU when its output is tiny."""

    def _takes_matmul_path(self, x: torch.Tensor) -> bool:
        if x.device.type != "cpu" or not (torch.is_grad_enabled() and self.weight.requires_grad):
            return False
        if (
            self.bias is not None
            or self.groups != 1
            or self.dilation != (1, 1)
            or self.padding_mode != "zeros"
            or isinstance(self.padding, str)
        ):
            return False
        h, w = x.shape[-2:]
        out_h = (h + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        out_w = (w + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        return out_h * out_w <= MAX_OUTPUT_POSITIONS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._takes_matmul_path(x):
            return super().forward(x)
        # Autocast does not reach inside a custom Function: cast here as it would for a convolution.
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        with torch.autocast("cpu", enabled=False):
            return _MatmulWeightGradConv2d.apply(
                x.to(dtype), self.weight.to(dtype), self.stride, self.padding
            )


def _small_map(old: nn.Conv2d) -> SmallMapConv2d:
    fast = SmallMapConv2d(
        old.in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        old.bias is not None,
        old.padding_mode,
        device="meta",
    )
    fast.weight, fast.bias = old.weight, old.bias
    return fast


def use_small_map_conv(model: nn.Module) -> nn.Module:
    """Swaps each plain `nn.Conv2d` in `model` for a `SmallMapConv2d` with the same parameters, in place."""
    return replace_modules(model, nn.Conv2d, _small_map)
