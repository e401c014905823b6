"""How every padded layer of a network fills its border: `arch.padding_mode`.

Zero padding lets a CNN tell where the image edge is, and so where a shape is (Islam et al. 2020; Kayhan &
van Gemert 2020): one mechanism by which a network can learn the quadrant shortcut. `reflect`,
`replicate` and `circular` give the border no value of its own to detect. They reach every layer that
looks past the edge, not only the convolutions: a max-pool's implicit padding and antialiased-cnns' blur
layers take the mode too, and a stride-1 max-pool that would drop the last row and column (the
anti-aliased ResNet's) is padded to keep its size. With `circular` a network of these layers ending in
global average pooling is then exactly invariant to circular shifts by multiples of its total stride
(tested). `zeros` leaves the networks as published: the max-pool ignores what is past the edge and the
blur layers reflect (padding 1 before and 2 after for the size-4 filter, at any input size).
"""

from __future__ import annotations

from antialiased_cnns.blurpool import BlurPool
from torch import nn

from shapeshift.config.schema import PADDING_MODES

_PAD_LAYERS = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d, "circular": nn.CircularPad2d}


def _first(v: int | tuple[int, ...]) -> int:
    return v if isinstance(v, int) else v[0]


def _pads_past_the_edge(pool: nn.MaxPool2d) -> bool:
    return _first(pool.padding) > 0 or (_first(pool.stride) == 1 and _first(pool.kernel_size) > 1)


class PaddedMaxPool2d(nn.Sequential):
    """A max-pool whose border is filled by a padding mode instead of being left out."""

    def __init__(self, pool: nn.MaxPool2d, mode: str):
        k, s, p = (_first(v) for v in (pool.kernel_size, pool.stride, pool.padding))
        # (left, right, top, bottom): a padded pool keeps its symmetric amount; an unpadded stride-1 pool
        # gets k - 1 after the map, so its output keeps the input's size instead of losing the edge.
        amounts = (p, p, p, p) if p > 0 else (0, k - 1, 0, k - 1)
        super().__init__(_PAD_LAYERS[mode](amounts), nn.MaxPool2d(k, stride=s, ceil_mode=pool.ceil_mode))


def set_padding_mode(model: nn.Module, mode: str) -> nn.Module:
    """Sets how every padded layer of `model` fills its border, in place (networks built elsewhere
    included). Parameters and state dicts are unchanged: padding has none."""
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {mode!r}")
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not isinstance(m.padding, str) and any(p > 0 for p in m.padding):
            m.padding_mode = mode  # Conv2d pads by mode in forward; the amounts are kept from construction
        elif isinstance(m, BlurPool) and mode != "zeros" and m.filt_size > 1:
            m.pad = _PAD_LAYERS[mode](m.pad_sizes)
    if mode != "zeros":
        for parent in list(model.modules()):
            for name, child in parent.named_children():
                if type(child) is nn.MaxPool2d and _pads_past_the_edge(child):
                    setattr(parent, name, PaddedMaxPool2d(child, mode))
    return model
