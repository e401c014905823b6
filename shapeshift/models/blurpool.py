"""Zhang's (2019) blur pooling, computed as a cascade of 2x2 averages instead of one depthwise convolution.

The binomial filter of size n is [1, 1] / 2 convolved with itself n - 1 times, so n - 1 average poolings
(the last one strided) give the same output as `antialiased_cnns.BlurPool` up to float rounding. Why:
under bf16 autocast on CPU the package's depthwise 4x4 convolution has a slow backward (measured on the
anti-aliased ResNet-18 at 64 px, batch 128: 1.59 s per training step, 0.79 s with the cascade; fp32
unchanged within noise). CPU autocast keeps reflection padding, and so the cascade after it, in fp32.
The `filt` buffer is kept, so state dicts and checkpoints are those of the package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from antialiased_cnns.blurpool import BlurPool
from torch import nn

from shapeshift.models.replace import replace_modules


class CascadeBlurPool(BlurPool):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.filt_size == 1:
            return super().forward(x)
        x = self.pad(x)
        for _ in range(self.filt_size - 2):
            x = F.avg_pool2d(x, 2, stride=1)
        return F.avg_pool2d(x, 2, stride=self.stride)


def _cascade(old: BlurPool) -> CascadeBlurPool:
    fast = CascadeBlurPool(old.channels, filt_size=old.filt_size, stride=old.stride, pad_off=old.pad_off)
    fast.pad, fast.filt = old.pad, old.filt  # the padding type the network was built with, and its buffer
    return fast


def use_cascade_blur(model: nn.Module) -> nn.Module:
    """Swaps every `antialiased_cnns.BlurPool` in `model` for the equivalent `CascadeBlurPool`, in place."""
    return replace_modules(model, BlurPool, _cascade)
