"""Training augmentation: an Albumentations pipeline built from `conf/aug/<name>.yaml`."""

from __future__ import annotations

import random
from collections.abc import Sequence

import albumentations as A
import numpy as np
from hydra.utils import instantiate


def build_augmentation(transforms: Sequence, seed: int) -> A.Compose | None:
    """Instantiate each `_target_` entry; an empty list means no augmentation.

    The pipeline works on uint8 HWC images and returns uint8: scaling to floats happens on the batch,
    once, instead of per sample.
    """
    if not transforms:
        return None
    steps = [t if isinstance(t, A.BasicTransform) else instantiate(t, _convert_="all") for t in transforms]
    pipeline = A.Compose(steps)
    # One stream that the transforms draw from in turn. `A.Compose(seed=...)` gives every transform its own
    # copy of the same seed, so they fire together and take the same first numbers (Albumentations 2.0.8).
    # Training reseeds the stream per sample (`AugmentedDataset`); this seed serves direct calls.
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline
