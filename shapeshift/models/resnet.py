"""ResNet-18 (He et al. 2016) in torchvision's layout, and Zhang's (2019) anti-aliased ResNet-18.

torchvision cannot be installed beside the CPU build of torch, so the standard network is written here;
it matches torchvision's `resnet18` module for module (11,177,538 parameters for 2 classes).
"""

from __future__ import annotations

import antialiased_cnns
from torch import nn

from shapeshift.models.blurpool import use_cascade_blur
from shapeshift.models.padding import set_padding_mode
from shapeshift.models.small_map_conv import SmallMapConv2d, use_small_map_conv
from shapeshift.models.weights import load_weights


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        # SmallMapConv2d: nn.Conv2d whose weight gradient is faster on CPU on the last stage's 2x2 maps.
        self.conv1 = SmallMapConv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = SmallMapConv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                SmallMapConv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        layers=(2, 2, 2, 2),
        padding_mode: str = "zeros",
        weights: str | None = None,
    ):
        super().__init__()
        self.conv1 = SmallMapConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages, c = [], 64
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(c, width, stride)] + [BasicBlock(width, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            c = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        self.min_input_size = 1
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        set_padding_mode(self, padding_mode)
        if weights:
            load_weights(self, weights)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


_AA_MIN_INPUT = {1: 4, 2: 20, 3: 20, 4: 36, 5: 36, 6: 52, 7: 52}


def antialiased_resnet18(
    num_classes: int,
    in_channels: int = 3,
    filter_size: int = 4,
    padding_mode: str = "zeros",
    weights: str | None = None,
) -> nn.Module:
    """`antialiased_cnns.resnet18` (never downloaded: `weights` is a local state dict, e.g. Zhang's ImageNet
    weights saved by hand). filter_size=1 is not a plain ResNet-18."""
    if not 1 <= filter_size <= 7:
        raise ValueError(f"antialiased filter_size must be in 1..7, got {filter_size}")
    model = antialiased_cnns.resnet18(pretrained=False, filter_size=filter_size, num_classes=num_classes)
    use_cascade_blur(model)  # same outputs, fast under bf16 autocast (shapeshift/models/blurpool.py)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    use_small_map_conv(model)  # as ResNet18's convolutions (shapeshift/models/small_map_conv.py)
    set_padding_mode(model, padding_mode)  # its convolutions; the blur layers pad by reflection already
    if weights:
        load_weights(model, weights)
    # Reflect padding in the blur layers fails on small feature maps: smallest working input, measured.
    model.min_input_size = _AA_MIN_INPUT[filter_size]
    return model
