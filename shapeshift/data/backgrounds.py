"""Backgrounds that replace the plain grey: procedural patterns and photos.

Photos come from images that installed packages ship (no network) or from a folder the user names. Each
photo is assigned once and for all to the `eval` or the `train` split, so a training augmentation that
draws photos can never show a model the backgrounds it is evaluated on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

PATTERN_KINDS = ("stripes", "checker", "noise", "texture")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Photo:
    name: str
    source: str
    licence: str
    split: str  # "eval" or "train"


# Fixed split of the shipped photos. Evaluation photos must never be used for training augmentation.
SHIPPED_PHOTOS = (
    Photo("china", "scikit-learn load_sample_images (china.jpg)", "CC BY 2.0", "eval"),
    Photo("coffee", "scikit-image data.coffee", "CC0", "eval"),
    Photo("rocket", "scikit-image data.rocket", "public domain", "eval"),
    Photo("flower", "scikit-learn load_sample_images (flower.jpg)", "CC BY 2.0", "train"),
    Photo("astronaut", "scikit-image data.astronaut", "public domain", "train"),
    Photo("chelsea", "scikit-image data.chelsea", "CC0", "train"),
    Photo("hubble_deep_field", "scikit-image data.hubble_deep_field", "public domain", "train"),
)
SPLITS = ("eval", "train")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


@cache
def _shipped(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return _as_rgb(load_sample_image(f"{name}.jpg"))
    import skimage.data

    return _as_rgb(getattr(skimage.data, name)())


def folder_split(name: str) -> str:
    """Deterministic split of a user's photo by its file name: about half for evaluation."""
    return "eval" if int(hashlib.sha1(name.encode()).hexdigest(), 16) % 2 == 0 else "train"


def photo_names(split: str, folder: str | None = None) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"unknown photo split {split!r}; choose one of {SPLITS}")
    if folder is None:
        return [p.name for p in SHIPPED_PHOTOS if p.split == split]
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder {root} does not exist")
    files = sorted(p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    names = [f for f in files if folder_split(f) == split]
    if not names:
        raise FileNotFoundError(f"photo folder {root} has no {split} photos (of {len(files)} images)")
    return names


def load_photos(split: str, folder: str | None = None) -> list[np.ndarray]:
    """RGB uint8 photos of one split, in a fixed order."""
    names = photo_names(split, folder)
    if folder is None:
        return [_shipped(n) for n in names]
    photos = []
    for n in names:
        img = cv2.imread(str(Path(folder).expanduser() / n), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot read photo {n} in {folder}")
        photos.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return photos


@cache
def _textures() -> tuple[np.ndarray, ...]:
    import skimage.data

    return tuple(np.asarray(getattr(skimage.data, n)(), np.float32) for n in ("brick", "grass", "gravel"))


def pattern(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean pattern in [-1, 1], float32 (S, S)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "stripes":
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4, 12)
        p = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi))
    elif kind == "checker":
        cell = int(rng.integers(3, 9))
        ox, oy = rng.integers(0, cell, size=2)
        p = (((xx + ox) // cell + (yy + oy) // cell) % 2) * 2.0 - 1.0
    elif kind == "noise":
        p = rng.uniform(-1, 1, size=(size, size))
    elif kind == "texture":
        textures = _textures()
        tex = textures[int(rng.integers(len(textures)))]
        crop = int(min(tex.shape) * rng.uniform(0.15, 0.4))
        y0 = int(rng.integers(0, tex.shape[0] - crop))
        x0 = int(rng.integers(0, tex.shape[1] - crop))
        patch = cv2.resize(tex[y0 : y0 + crop, x0 : x0 + crop], (size, size), interpolation=cv2.INTER_AREA)
        p = (patch - patch.mean()) / (np.abs(patch - patch.mean()).max() + 1e-6)
    else:
        raise ValueError(f"unknown pattern kind {kind!r}; choose from {PATTERN_KINDS}")
    return p.astype(np.float32)


def pattern_background(level: int, contrast: float, size: int, rng: np.random.Generator, kinds=PATTERN_KINDS):
    """Grey level `level` modulated by a random pattern of amplitude `contrast` (fraction of 127)."""
    p = pattern(str(kinds[int(rng.integers(len(kinds)))]), size, rng)
    grey = np.clip(level + contrast * 127.5 * p, 0, 255)
    return np.repeat(grey[..., None], 3, axis=2)


def photo_background(level: int, alpha: float, size: int, rng: np.random.Generator, photos) -> np.ndarray:
    """A random crop of a random photo, blended over the plain grey with weight `alpha`."""
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    crop = int(min(h, w) * rng.uniform(0.2, 0.6))
    y0 = int(rng.integers(0, h - crop + 1))
    x0 = int(rng.integers(0, w - crop + 1))
    patch = cv2.resize(photo[y0 : y0 + crop, x0 : x0 + crop], (size, size), interpolation=cv2.INTER_AREA)
    return (1.0 - alpha) * float(level) + alpha * patch.astype(np.float32)
