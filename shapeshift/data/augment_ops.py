"""Albumentations transforms that replace a training image's plain background (the `strong` preset).

Training images are a dark shape on a plain light grey: the shape can be recovered from the pixels alone.
The background's grey level is the image's most common one, the shape's is its darkest, and every pixel's
shape coverage is `(bg - pixel) / (bg - fg)`, clipped to [0, 1]: 1 inside, 0 on the background, in between
on the anti-aliased edge. The new image is `pixel + (new_background - bg) * (1 - coverage)`: pixels inside
the shape keep their exact value, background pixels become the new background, edges blend softly.

Photos come from `backgrounds.load_photos("train", ...)` only: the split the o.o.d. catalog never uses.

Both transforms follow Albumentations 2: random draws come from the transform's own `py_random` and
`random_generator` (in `get_params`), so `A.Compose(..., seed=s)` reproduces a pipeline exactly, and
`apply` is a pure function of the image and the drawn parameters. They pickle (DataLoader workers) without
their photo cache, which each copy reloads on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import numpy as np
from albumentations.core.transforms_interface import BaseTransformInitSchema
from pydantic import Field, model_validator

from shapeshift.data import backgrounds

TRAIN_SPLIT = "train"  # the only photo split a training transform may read; never "eval"
MIN_CONTRAST = 40.0  # grey levels between background and shape below which no shape is assumed


def shape_coverage(img: np.ndarray, min_contrast: float = MIN_CONTRAST) -> tuple[np.ndarray, float] | None:
    """(coverage in [0, 1] (H, W) float32, background grey level) of a dark shape on a plain light background;
    None when the image holds no shape darker than its background by `min_contrast` grey levels."""
    grey = img.astype(np.float32)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    counts = np.bincount(np.clip(np.rint(grey), 0, 255).astype(np.int64).ravel(), minlength=256)
    level = float(np.argmax(counts))  # the most common grey: the plain background
    dark = float(grey.min())  # the shape's interior
    if level - dark < min_contrast:
        return None
    coverage = np.clip((level - grey) / (level - dark), 0.0, 1.0)
    return coverage.astype(np.float32), level


def replace_background(
    img: np.ndarray, make_background: Callable[[int, int], np.ndarray], min_contrast: float = MIN_CONTRAST
) -> np.ndarray:
    """Composite the image's shape over `make_background(level, size)` ((size, size, 3) float, any range).

    Works on (H, W), (H, W, 1) and (H, W, 3) uint8 images; an image without a visible shape is returned
    unchanged.
    """
    found = shape_coverage(img, min_contrast)
    if found is None:
        return img
    coverage, level = found
    h, w = img.shape[:2]
    new = np.asarray(make_background(int(round(level)), max(h, w)), np.float32)[:h, :w]
    if img.ndim == 2 or img.shape[2] != new.shape[2]:
        new = new.mean(axis=2, keepdims=True)
    keep = (1.0 - coverage)[..., None]
    out = img.astype(np.float32).reshape(h, w, -1) + (new - level) * keep
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(img.shape)


def _check_range(name: str, value: tuple[float, float], lo: float, hi: float) -> None:
    if not lo <= value[0] <= value[1] <= hi:
        raise ValueError(f"{name} must be a range (low, high) within [{lo}, {hi}], got {value}")


class RandomPatternBackground(A.ImageOnlyTransform):
    """Replace the plain background by a random procedural pattern (stripes, checker, noise, texture).

    Args:
        contrast: range of the pattern's amplitude, a fraction of 127 grey levels (the catalog's
            `background_pattern` family runs from 0.1 to 0.8).
        kinds: pattern kinds to draw from (`backgrounds.PATTERN_KINDS`).
        min_contrast: shape-to-background grey difference below which the image is left alone.
        p: probability of applying the transform.
    """

    class InitSchema(BaseTransformInitSchema):
        contrast: tuple[float, float]
        kinds: tuple[str, ...]
        min_contrast: float = Field(ge=0)

        @model_validator(mode="after")
        def _check(self):
            _check_range("contrast", self.contrast, 0.0, 2.0)
            unknown = [k for k in self.kinds if k not in backgrounds.PATTERN_KINDS]
            if unknown or not self.kinds:
                raise ValueError(f"kinds must be some of {backgrounds.PATTERN_KINDS}, got {self.kinds}")
            return self

    def __init__(
        self,
        contrast: tuple[float, float] = (0.1, 0.8),
        kinds: Sequence[str] = backgrounds.PATTERN_KINDS,
        min_contrast: float = MIN_CONTRAST,
        p: float = 0.5,
    ):
        super().__init__(p=p)
        self.contrast = tuple(contrast)
        self.kinds = tuple(kinds)
        self.min_contrast = min_contrast

    def get_params(self) -> dict[str, Any]:
        return {
            "contrast": self.py_random.uniform(*self.contrast),
            "background_seed": int(self.random_generator.integers(2**63)),
        }

    def apply(self, img: np.ndarray, contrast: float, background_seed: int, **params: Any) -> np.ndarray:
        def make(level: int, size: int) -> np.ndarray:
            rng = np.random.default_rng(background_seed)
            return backgrounds.pattern_background(level, contrast, size, rng, self.kinds)

        return replace_background(img, make, self.min_contrast)


class RandomPhotoBackground(A.ImageOnlyTransform):
    """Replace the plain background by a random crop of a *training* photo, blended over the grey.

    Args:
        alpha: range of the photo's weight over the plain grey (1 = the photo alone).
        photo_dir: a folder of the user's photos (its `train` half by file-name hash), or None for the
            photos shipped with scikit-image/scikit-learn (their `train` split).
        min_contrast: shape-to-background grey difference below which the image is left alone.
        p: probability of applying the transform.
    """

    class InitSchema(BaseTransformInitSchema):
        alpha: tuple[float, float]
        photo_dir: str | None
        min_contrast: float = Field(ge=0)

        @model_validator(mode="after")
        def _check(self):
            _check_range("alpha", self.alpha, 0.0, 1.0)
            return self

    def __init__(
        self,
        alpha: tuple[float, float] = (0.3, 1.0),
        photo_dir: str | None = None,
        min_contrast: float = MIN_CONTRAST,
        p: float = 0.5,
    ):
        super().__init__(p=p)
        self.alpha = tuple(alpha)
        self.photo_dir = photo_dir
        self.min_contrast = min_contrast
        self._photos: list[np.ndarray] | None = None
        if photo_dir is not None:
            backgrounds.photo_names(TRAIN_SPLIT, photo_dir)  # fail now, not mid-training, on a bad folder

    @property
    def photos(self) -> list[np.ndarray]:
        if self._photos is None:
            self._photos = backgrounds.load_photos(TRAIN_SPLIT, self.photo_dir)
        return self._photos

    def get_params(self) -> dict[str, Any]:
        return {
            "alpha": self.py_random.uniform(*self.alpha),
            "background_seed": int(self.random_generator.integers(2**63)),
        }

    def apply(self, img: np.ndarray, alpha: float, background_seed: int, **params: Any) -> np.ndarray:
        def make(level: int, size: int) -> np.ndarray:
            rng = np.random.default_rng(background_seed)
            return backgrounds.photo_background(level, alpha, size, rng, self.photos)

        return replace_background(img, make, self.min_contrast)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_photos"] = None  # megabytes of pixels: reloaded (from the train split) where unpickled
        return state
