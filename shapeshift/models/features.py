"""The features the detectors read, taken from one forward pass of any backbone.

Every backbone here is a stack of feature maps that shrink, pooled or flattened into a linear layer at the
end. Forward hooks on the leaf modules keep, for each map size, the last activation of that size (the end
of a stage), so no architecture needs to expose anything:

- `global`: the channel means of the last map with more than one position. For the GAP CNN and both
  ResNets this is exactly the penultimate layer; the strided and max-pooling CNNs flatten their map
  instead, and for them it is the map's channel means.
- `spatial`: the same map's means over a 2x2 grid of image quadrants: the position shortcut lives here.
- `stages`: the 2x2 means of every stage's map, early ones included. A model that learned only where a
  shape is has no shape left in its last map, so a star where moons belong looks like an i.i.d. moon
  there; its first layers still respond to edges and points, which tell the two apart.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class FeatureTap:
    """While attached: per map size, the pooled last activation of that size."""

    def __init__(self):
        self.by_size: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._last: tuple[int, torch.Tensor] | None = None  # the newest map, pooled once its size changes

    def _hook(self, module, inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[2] * output.shape[3] > 1:
            size = output.shape[2] * output.shape[3]
            if self._last is not None and self._last[0] != size:
                self._pool()
            # A reference, not a copy: pooling every leaf's output cost nearly as much as the forward pass
            # (ResNet-18: 58 of 189 s of a profiled test). The layer that ends a stage is the one kept, and an
            # in-place ReLU after it is a module whose hook hands over the same tensor.
            self._last = (size, output.detach())

    def _pool(self) -> None:
        size, output = self._last
        fmap = output.float()
        self.by_size[size] = (fmap.mean(dim=(2, 3)), F.adaptive_avg_pool2d(fmap, 2).flatten(1))
        self._last = None

    def features(self) -> dict[str, torch.Tensor]:
        if self._last is not None:
            self._pool()
        if not self.by_size:
            raise RuntimeError("the backbone produced no spatial activation: feature detectors need one")
        stages = [self.by_size[size] for size in sorted(self.by_size, reverse=True)]  # early stages first
        self.by_size = {}
        last_global, last_spatial = stages[-1]
        return {
            "global": last_global,
            "spatial": last_spatial,
            "stages": torch.cat([F.normalize(quadrants, dim=1) for _, quadrants in stages], dim=1),
        }


@contextmanager
def tapped(backbone: nn.Module):
    """Hooks on every leaf module for the duration: execution order decides which activation is last."""
    tap = FeatureTap()
    handles = [m.register_forward_hook(tap._hook) for m in backbone.modules() if not list(m.children())]
    try:
        yield tap
    finally:
        for h in handles:
            h.remove()
