"""Swapping layers of a network built elsewhere (antialiased-cnns) for equivalent, faster ones."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def replace_modules(
    model: nn.Module, old_type: type[nn.Module], make: Callable[[nn.Module], nn.Module]
) -> nn.Module:
    """Replaces, in place, every submodule of exactly `old_type` (not subclasses) by `make(old)`."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is old_type:
                setattr(parent, name, make(child))
    return model
