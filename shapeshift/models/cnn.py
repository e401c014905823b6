"""The study's three small CNNs: strided, max-pooling, and non-subsampling with global average pooling."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from shapeshift.models.padding import set_padding_mode


def _conv(c_in: int, c_out: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(
            c_in, c_out, kernel_size, stride=stride, padding=dilation * (kernel_size // 2), dilation=dilation
        ),
        nn.ReLU(inplace=True),
    ]


class StridedCNN(nn.Module):
    """Convolutions of stride 2 that subsample, then flatten and one linear layer."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        widths: Sequence[int] = (32, 64, 128),
        kernel_size: int = 3,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        layers, c = [], in_channels
        for w in widths:
            layers += _conv(c, w, kernel_size, stride=2)
            c = w
        self.features = set_padding_mode(nn.Sequential(*layers), padding_mode)
        side = image_size
        for _ in widths:
            side = (side - 1) // 2 + 1  # output size of a stride-2 conv with `same`-style padding
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, num_classes))
        self.min_input_size = 2 ** len(widths)

    def forward(self, x):
        return self.head(self.features(x))


class MaxPoolCNN(nn.Module):
    """Each convolution followed by 2x2 max pooling (the classic MNIST net), then flatten and linear."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        widths: Sequence[int] = (32, 64, 128),
        kernel_size: int = 3,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        layers, c = [], in_channels
        for w in widths:
            layers += [*_conv(c, w, kernel_size), nn.MaxPool2d(2)]
            c = w
        self.features = set_padding_mode(nn.Sequential(*layers), padding_mode)
        side = image_size // 2 ** len(widths)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, num_classes))
        self.min_input_size = 2 ** len(widths)

    def forward(self, x):
        return self.head(self.features(x))


class GapCNN(nn.Module):
    """Stride-1 convolutions (no subsampling), global average pooling, linear.

    Position can only leave through the final average, which discards it, or through what a unit sees of
    the border: with the default 3 layers of 5x5 a unit sees 13 px, so only units near the edge do.
    `dilations` (one per layer) widen that view without subsampling: the receptive field is
    1 + (kernel_size - 1) * sum(dilations) px (`receptive_field`).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        widths: Sequence[int] = (16, 32, 32),
        kernel_size: int = 5,
        padding_mode: str = "zeros",
        dilations: Sequence[int] | None = None,
    ):
        super().__init__()
        dilations = list(dilations) if dilations is not None else [1] * len(widths)
        if len(dilations) != len(widths) or min(dilations) < 1:
            raise ValueError(f"dilations needs one positive value per layer ({len(widths)}), got {dilations}")
        layers, c = [], in_channels
        for w, d in zip(widths, dilations, strict=True):
            layers += _conv(c, w, kernel_size, dilation=d)
            c = w
        self.receptive_field = 1 + (kernel_size - 1) * sum(dilations)
        self.features = set_padding_mode(nn.Sequential(*layers), padding_mode)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
        self.min_input_size = 1

    def forward(self, x):
        return self.head(self.features(x))
