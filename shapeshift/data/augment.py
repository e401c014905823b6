"""Training augmentation built from `conf/aug/<name>.yaml`: an Albumentations pipeline run per image in the
data loader, or one `BatchTransform` run on the batch where the model is (data/batch_augment.py)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import albumentations as A
import numpy as np
from hydra.utils import instantiate

from shapeshift.config.errors import ConfigError
from shapeshift.data.batch_augment import BatchTransform

Augmentation = A.Compose | BatchTransform


def build_augmentation(transforms: Sequence, seed: int) -> Augmentation | None:
    """Instantiate each `_target_` entry; an empty list means no augmentation.

    The pipeline works on uint8 HWC images and returns uint8: scaling to floats happens on the batch,
    once, instead of per sample. A `BatchTransform` (`basic_batched`, `augmix_batched`) is the whole
    augmentation: it runs on the batch, after the loader, where no per-image step can follow it.
    """
    if not transforms:
        return None
    steps = [t if isinstance(t, A.BasicTransform) else instantiate(t, _convert_="all") for t in transforms]
    if any(isinstance(t, BatchTransform) for t in steps):
        if len(steps) > 1:
            raise ConfigError(
                "aug.transforms: a batched augmentation runs on the whole batch and must be the only "
                "transform "
                f"(got {len(steps)}: {', '.join(type(t).__name__ for t in steps)})"
            )
        return steps[0]
    pipeline = A.Compose(steps)
    # One stream that the transforms draw from in turn. `A.Compose(seed=...)` gives every transform its own
    # copy of the same seed, so they fire together and take the same first numbers (Albumentations 2.0.8).
    # Training reseeds the stream per sample (`AugmentedDataset`); this seed serves direct calls.
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline
