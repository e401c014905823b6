"""The o.o.d. catalog: named families of distortions at five severities, rendered from shape parameters.

A severity is a mapping of operation name -> arguments, written in YAML (`conf/shift/`). Operations run
in a fixed order: move the shape (`position`), distort it around its own centre (`affine`), replace the
background (`pattern`, `photo`), then change the whole image (`contrast`, `blur`, `noise`). Each o.o.d. set
redraws the i.i.d. test shapes, so every set is the same images under one controlled change.
`occlusion` (a square cut out of the shape) is not in the default catalog: quality control chooses its
gate on validation images occluded this way, a shift no reported set contains (conf/train.yaml, `qc`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import albumentations as A
import cv2
import numpy as np

from shapeshift.config.errors import ConfigError
from shapeshift.data import backgrounds
from shapeshift.data.corruptions import IMAGE_OPS, is_image_level
from shapeshift.data.render import (
    OPPOSITE_QUADRANT,
    ShapeParams,
    composite,
    plain_background,
    quadrant_centre,
    shape_mask,
)
from shapeshift.runs.metric_keys import SEVERITIES

OPS = {
    "position": {"fraction"},
    "affine": {"scale", "rotate", "shear"},
    "pattern": {"contrast", "kinds"},
    "photo": {"alpha"},
    "contrast": {"factor"},
    "blur": {"sigma"},
    "noise": {"std"},
    "occlusion": {"size"},
}


class ShiftError(ConfigError):
    """A catalog entry or a request for one that cannot be honoured."""


def _params_of(op: str) -> frozenset[str] | set[str] | None:
    if op in OPS:
        return OPS[op]
    if op in IMAGE_OPS:
        return IMAGE_OPS[op][1]
    return None


def validate_catalog(families: Mapping[str, list]) -> None:
    """Five severities per family, known operations with known arguments, and within one severity either
    shape operations (rendered: star/moon data only) or pixel operations (any data), not both."""
    for family, levels in families.items():
        if len(levels) != len(SEVERITIES):
            raise ShiftError(
                f"shift family {family!r} has {len(levels)} severities; it needs {len(SEVERITIES)}"
            )
        for k, ops in enumerate(levels, start=1):
            for op, args in ops.items():
                known = _params_of(op)
                if known is None:
                    raise ShiftError(
                        f"shift {family}/s{k}: unknown operation {op!r}; choose from "
                        f"{sorted(OPS)} (shapes) or {sorted(IMAGE_OPS)} (pixels)"
                    )
                unknown = set(args or {}) - set(known)
                if unknown:
                    raise ShiftError(
                        f"shift {family}/s{k}: {op} takes {sorted(known)}, not {sorted(unknown)}"
                    )
                if op in IMAGE_OPS and set(known) - set(args or {}):
                    raise ShiftError(
                        f"shift {family}/s{k}: {op} needs {sorted(set(known) - set(args or {}))}"
                    )
            if any(op in IMAGE_OPS for op in ops) and not is_image_level(ops):
                raise ShiftError(
                    f"shift {family}/s{k} mixes shape operations with pixel operations; "
                    "make them two families"
                )


def image_level_families(families: Mapping[str, list]) -> list[str]:
    """The families whose every severity works on pixels: the ones any data set can evaluate."""
    return [f for f, levels in families.items() if all(is_image_level(ops) for ops in levels)]


def select(families: Mapping[str, list], names: list[str] | None) -> dict[str, list]:
    """Pick families by name; an unknown name fails with the list of valid ones."""
    if not names:
        return dict(families)
    unknown = [n for n in names if n not in families]
    if unknown:
        raise ShiftError(f"unknown shift family {unknown[0]!r}; choose from {sorted(families)}")
    return {n: families[n] for n in names}


def severity_ops(families: Mapping[str, list], family: str, severity: int) -> dict:
    if family not in families:
        raise ShiftError(f"unknown shift family {family!r}; choose from {sorted(families)}")
    if severity not in SEVERITIES:
        raise ShiftError(f"severity {severity} is outside 1..{SEVERITIES[-1]}")
    return dict(families[family][severity - 1])


def set_seed(base_seed: int, name: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([base_seed, 3, zlib.crc32(name.encode())])


@cache
def _affine(scale: float, rotate: float, shear: float) -> A.Affine:
    return A.Affine(
        scale=(scale, scale),
        rotate=(rotate, rotate),
        shear={"x": (shear, shear), "y": (0.0, 0.0)},
        interpolation=cv2.INTER_LINEAR,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        p=1.0,
    )


def _occlude(mask: np.ndarray, cx: float, cy: float, radius: float, size: float, rng) -> np.ndarray:
    """The shape with a square hole of side `size` x its diameter, centred within half a radius of the
    shape's centre: the background shows through it."""
    half = size * radius
    ox, oy = cx + rng.uniform(-0.5, 0.5) * radius, cy + rng.uniform(-0.5, 0.5) * radius
    ys, xs = np.mgrid[: mask.shape[0], : mask.shape[1]] + 0.5
    hole = (np.abs(xs - ox) < half) & (np.abs(ys - oy) < half)
    return np.where(hole, 0.0, mask).astype(mask.dtype)


def _translate(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(mask)
    s = mask.shape[0]
    ys, yd = (slice(0, s - dy), slice(dy, s)) if dy >= 0 else (slice(-dy, s), slice(0, s + dy))
    xs, xd = (slice(0, s - dx), slice(dx, s)) if dx >= 0 else (slice(-dx, s), slice(0, s + dx))
    out[yd, xd] = mask[ys, xs]
    return out


@dataclass
class ShiftedSet:
    images: np.ndarray  # uint8 (N, S, S, 3)
    masks: np.ndarray  # float32 (N, S, S), the shape's coverage after the shift
    params: ShapeParams  # after `position`


def apply(
    params: ShapeParams,
    ops: Mapping[str, Mapping],
    image_size: int,
    rng: np.random.Generator,
    photos: list[np.ndarray] | None = None,
) -> ShiftedSet:
    """Render `params` under the operations `ops` (one severity of one family)."""
    unknown = set(ops) - set(OPS)
    if unknown:
        raise ShiftError(f"unknown operation {sorted(unknown)[0]!r}; choose from {sorted(OPS)}")
    n, s = len(params), image_size
    if "position" in ops:
        # Move toward the opposite quadrant; fraction 1.0 lands exactly on the mirrored position.
        frac = float(ops["position"]["fraction"])
        target = np.array([OPPOSITE_QUADRANT[int(q)] for q in params.quadrant])
        qx, _ = quadrant_centre(params.quadrant, s)
        tx, _ = quadrant_centre(target, s)
        params = params.replace(cx=(params.cx + frac * (tx - qx)).astype(np.float32))
    images = np.empty((n, s, s, 3), np.uint8)
    masks = np.empty((n, s, s), np.float32)
    affine = ops.get("affine")
    fg = params.fg.astype(np.float32)
    if "contrast" in ops:
        # Pull the shape's grey level toward the background's.
        fg = params.bg - float(ops["contrast"]["factor"]) * (params.bg.astype(np.float32) - fg)
    if "photo" in ops and not photos:
        raise ShiftError("the photo operation needs photos; none were loaded")
    post = []
    if "blur" in ops:
        sigma = float(ops["blur"]["sigma"])
        post.append(A.GaussianBlur(blur_limit=0, sigma_limit=(sigma, sigma), p=1.0))
    if "noise" in ops:
        std = float(ops["noise"]["std"])
        post.append(A.GaussNoise(std_range=(std, std), p=1.0))
    post_t = A.Compose(post, seed=int(rng.integers(2**31))) if post else None

    for i in range(n):
        label, cx, cy = int(params.label[i]), float(params.cx[i]), float(params.cy[i])
        if affine:
            # Draw centred, distort around the shape's own centre, then move into place.
            ix, iy = round(cx) - s // 2, round(cy) - s // 2
            m = shape_mask(label, s, cx - ix, cy - iy, params.radius[i], params.angle[i])
            scale = float(affine.get("scale", 1.0))
            scale = scale if rng.random() < 0.5 else 1.0 / scale
            rotate = float(affine.get("rotate", 0.0)) * rng.choice((-1.0, 1.0))
            shear = float(affine.get("shear", 0.0)) * rng.choice((-1.0, 1.0))
            m = _translate(_affine(scale, rotate, shear)(image=m)["image"], ix, iy)
        else:
            m = shape_mask(label, s, cx, cy, params.radius[i], params.angle[i])
        if "occlusion" in ops:
            m = _occlude(m, cx, cy, float(params.radius[i]), float(ops["occlusion"]["size"]), rng)
        level = int(params.bg[i])
        if "pattern" in ops:
            kinds = ops["pattern"].get("kinds") or backgrounds.PATTERN_KINDS
            bg = backgrounds.pattern_background(level, float(ops["pattern"]["contrast"]), s, rng, kinds)
        elif "photo" in ops:
            bg = backgrounds.photo_background(level, float(ops["photo"]["alpha"]), s, rng, photos)
        else:
            bg = plain_background(s, level)
        img = composite(m, fg[i], bg)
        if post_t is not None:
            img = post_t(image=img)["image"]
        images[i], masks[i] = img, m
    return ShiftedSet(images, masks, params)
