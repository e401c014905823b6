"""Training augmentation: an Albumentations pipeline built from `conf/aug/<name>.yaml`."""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
from hydra.utils import instantiate


def build_augmentation(transforms: Sequence, seed: int) -> A.Compose | None:
    """Instantiate each `_target_` entry; an empty list means no augmentation.

    The pipeline works on uint8 HWC images and returns uint8: scaling to floats happens on the batch,
    once, instead of per sample.
    """
    if not transforms:
        return None
    steps = [t if isinstance(t, A.BasicTransform) else instantiate(t, _convert_="all") for t in transforms]
    return A.Compose(steps, seed=seed)
