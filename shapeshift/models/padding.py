"""How every padded convolution of a network fills its border: `arch.padding_mode`.

Zero padding lets a CNN tell where the image edge is, and so where a shape is (Islam et al. 2020; Kayhan &
van Gemert 2020): one mechanism by which a network can learn the quadrant shortcut. `reflect`,
`replicate` and `circular` give the border no value of its own to detect.
"""

from __future__ import annotations

from torch import nn

from shapeshift.config import PADDING_MODES


def set_padding_mode(model: nn.Module, mode: str) -> nn.Module:
    """Sets `padding_mode` on every Conv2d that pads, in place (networks built elsewhere included)."""
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {mode!r}")
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not isinstance(m.padding, str) and any(p > 0 for p in m.padding):
            m.padding_mode = mode  # Conv2d pads by mode in forward; the amounts are kept from construction
    return model
