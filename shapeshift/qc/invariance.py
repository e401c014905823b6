"""Label-free evidence of a shortcut: does a model's prediction survive a transform the data declares
label-preserving? A star flipped is still a star, but every flip moves it into the moons' quadrants, so a
model that reads the quadrant changes its answer and one that reads the shape keeps it.

References are chosen by it: of a sweep's runs, those whose predictions on the validation images are as
invariant as the most invariant one (within TOLERANCE) are kept, the others dropped. Ten quadrant readers
then cannot outvote the one run that reads the shape (with a sweep as references, most runs share the
shortcut). Accuracy on the validation images cannot tell them apart: every one of them is right there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from shapeshift.data.base import model_input

TOLERANCE = 0.05  # kept: consistency at least the best reference's minus this
TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "rot180": lambda x: x.flip(-1).flip(-2),
}


# The same transforms on uint8 (N, H, W, C) arrays, the data modules' layout: validation images under the
# declared invariances, to choose the gate on (labels kept, by the data's own declaration).
ARRAY_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "hflip": lambda a: a[:, :, ::-1],
    "vflip": lambda a: a[:, ::-1],
    "rot180": lambda a: a[:, ::-1, ::-1],
}


def transformed(
    images: np.ndarray, labels: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """`images` under each transform in `names`, one after another, with their (unchanged) labels."""
    if not len(images) or not names:
        return images[:0], labels[:0]
    out = np.concatenate([np.ascontiguousarray(ARRAY_TRANSFORMS[n](images)) for n in names])
    return out, np.concatenate([labels] * len(names))


def check(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown invariance {unknown[0]!r}; choose from {', '.join(TRANSFORMS)}")
    return list(names)


def consistency(
    models: Sequence[nn.Module],
    images: np.ndarray,
    names: Sequence[str],
    batch: int = 500,
    predicted: Sequence[torch.Tensor | None] = (),
):
    """Per model, the share of (image, transform) pairs whose predicted class the transform keeps.
    `predicted`: per model, its classes on `images` where the caller has them already (one forward less)."""
    same = torch.zeros(len(models), dtype=torch.float64)
    if not len(images) or not names:
        return same.fill_(float("nan"))
    known = list(predicted) + [None] * (len(models) - len(predicted))
    device = next(models[0].parameters()).device
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = model_input(images[i : i + batch]).to(device)
            for j, model in enumerate(models):
                plain = model(x).argmax(1) if known[j] is None else known[j][i : i + batch].to(device)
                for name in names:
                    same[j] += (model(TRANSFORMS[name](x)).argmax(1) == plain).sum().item()
    return same / (len(images) * len(names))


def select(scores: torch.Tensor, tolerance: float = TOLERANCE) -> list[int]:
    """Indices of the references within `tolerance` of the most invariant one (all where none is scored)."""
    if not len(scores) or torch.isnan(scores).all():
        return list(range(len(scores)))
    best = float(scores.nan_to_num(-1.0).max())
    return [i for i, s in enumerate(scores.tolist()) if s >= best - tolerance]
