"""AugMix (Hendrycks et al. 2020, "AugMix: A Simple Data Processing Method to Improve Robustness and
Uncertainty") as an Albumentations transform; its operations are Albumentations transforms from the YAML.

Albumentations has no AugMix (its request has been open since 2019), so the mixing is written here and
the operations are its primitives (AutoContrast, Equalize, Posterize, Solarize, Affine), listed with the
reference ranges in conf/aug/augmix.yaml. One application, as `augment_and_mix` in
github.com/google-research/augmix:

    w ~ Dirichlet(alpha, ..., alpha)   (width weights)     m ~ Beta(alpha, alpha)
    chain_i = op_1 o ... o op_d (x),   d = depth or uniform in {1, 2, 3},  ops uniform from the list
    out = (1 - m) x + m * sum_i w_i chain_i

in float, rounded once to uint8 at the end. Left out: the paper's Jensen-Shannon consistency loss (three
forward passes per image, a change to the training step, not to the data); the presets here train with
the plain cross-entropy, as the paper's "AugMix without JSD" ablation does.

Randomness follows Albumentations 2: `get_params` draws one seed from the transform's `random_generator`;
`apply` is a pure function of the image and that seed, and gives each operation its own stream from it,
so a per-sample reseed (`AugmentedDataset`) reproduces an image exactly with any worker count.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
from albumentations.core.transforms_interface import BaseTransformInitSchema
from pydantic import ConfigDict, Field

# The operations AugMix leaves out because ImageNet-C tests them, and the catalog sets (conf/shift/
# corruptions.yaml) they would leak into. tests/test_augmix.py checks that no preset uses them.
EXCLUDED_FOR_OVERLAP = {
    "brightness": ("brightness",),
    "contrast": ("contrast",),
    "color": ("saturate",),  # PIL's Color enhance scales saturation
    "sharpness": ("defocus_blur", "gaussian_blur"),  # sharpening and blurring are one filter family
}


class AugMix(A.ImageOnlyTransform):
    """Mix `width` random chains of `operations` with Dirichlet weights, then with the original image.

    Args:
        operations: Albumentations transforms (each applied with p=1 inside a chain).
        width: chains per image (the reference: 3).
        depth: operations per chain; -1 draws 1 to 3 per chain (the reference).
        alpha: Dirichlet and Beta concentration (the reference: 1).
        p: probability of applying the transform.
    """

    class InitSchema(BaseTransformInitSchema):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        operations: list[Any] = Field(min_length=1)
        width: int = Field(ge=1)
        depth: int = Field(ge=-1)
        alpha: float = Field(gt=0)

    def __init__(
        self,
        operations: Sequence[A.BasicTransform],
        width: int = 3,
        depth: int = -1,
        alpha: float = 1.0,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        if depth == 0:
            raise ValueError("depth must be -1 (1 to 3 per chain) or at least 1, got 0")
        self.operations = list(operations)
        for op in self.operations:
            op.p = 1.0  # a chain's operation always fires; the chain's length is its randomness
        self.width = width
        self.depth = depth
        self.alpha = alpha

    def get_params(self) -> dict[str, Any]:
        return {"mix_seed": int(self.random_generator.integers(2**63))}

    def apply(self, img: np.ndarray, mix_seed: int, **params: Any) -> np.ndarray:
        rng = np.random.default_rng(mix_seed)
        weights = rng.dirichlet([self.alpha] * self.width).astype(np.float32)
        m = np.float32(rng.beta(self.alpha, self.alpha))
        mix = np.zeros(img.shape, np.float32)
        for w in weights:
            x = img
            for _ in range(self.depth if self.depth > 0 else int(rng.integers(1, 4))):
                op = self.operations[int(rng.integers(len(self.operations)))]
                seed = int(rng.integers(2**63))
                op.set_random_state(np.random.default_rng(seed), random.Random(seed))
                x = op(image=x)["image"].reshape(img.shape)
            mix += w * x.astype(np.float32)
        out = (1.0 - m) * img.astype(np.float32) + m * mix
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("operations", "width", "depth", "alpha")
