"""Procedural stars and crescent moons with the quadrant shortcut of Geirhos et al. (2020).

Every image is described by a row of parameters (class, quadrant, centre, radius, angle, grey levels),
sampled from a seeded generator and then drawn. Keeping parameters separate from pixels lets the o.o.d.
suite re-draw the very same shapes moved, distorted or on another background.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

CLASSES = ("star", "moon")
STAR, MOON = 0, 1

# Quadrants as (row, col): 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
QUADRANTS = ((0, 0), (0, 1), (1, 0), (1, 1))
TRAIN_QUADRANTS = {STAR: (1, 2), MOON: (0, 3)}
# The opposite quadrant is the horizontal mirror, so stars land top-left/bottom-right, moons the other two.
OPPOSITE_QUADRANT = {0: 1, 1: 0, 2: 3, 3: 2}

_SUBPIXEL_BITS = 4  # fixed-point precision for OpenCV's anti-aliased drawing


@dataclass
class ShapeParams:
    """One row per image; all arrays share the first dimension."""

    label: np.ndarray  # int64, 0 star / 1 moon
    quadrant: np.ndarray  # int64, index into QUADRANTS
    cx: np.ndarray  # float32 pixel centre
    cy: np.ndarray
    radius: np.ndarray  # float32 outer radius in pixels
    angle: np.ndarray  # float32 degrees
    fg: np.ndarray  # uint8 grey level of the shape (dark)
    bg: np.ndarray  # uint8 grey level of the background (light)

    def __len__(self) -> int:
        return len(self.label)

    def take(self, index) -> ShapeParams:
        return ShapeParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def replace(self, **arrays) -> ShapeParams:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(arrays)
        return ShapeParams(**values)


def quadrant_centre(quadrant: np.ndarray, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.array([QUADRANTS[q][0] for q in np.atleast_1d(quadrant)])
    cols = np.array([QUADRANTS[q][1] for q in np.atleast_1d(quadrant)])
    half = image_size / 2
    return (cols + 0.5) * half, (rows + 0.5) * half


def sample_params(
    n_per_class: int,
    image_size: int,
    rng: np.random.Generator,
    radius_range: tuple[float, float] = (0.55, 0.8),
    angle_jitter: float = 20.0,
    fg_range: tuple[int, int] = (0, 70),
    bg_range: tuple[int, int] = (190, 255),
) -> ShapeParams:
    """Sample shapes in their trained quadrants; radius_range is a fraction of half a quadrant."""
    label = np.repeat(np.arange(len(CLASSES)), n_per_class)
    rng.shuffle(label)
    n = len(label)
    choice = rng.integers(0, 2, size=n)
    quadrant = np.array(
        [TRAIN_QUADRANTS[int(c)][k] for c, k in zip(label, choice, strict=True)], dtype=np.int64
    )
    half_quadrant = image_size / 4
    radius = rng.uniform(*radius_range, size=n) * half_quadrant
    # Jitter the centre as far as the shape still fits inside its quadrant (1 px margin).
    room = np.maximum(half_quadrant - radius - 1.0, 0.0)
    qx, qy = quadrant_centre(quadrant, image_size)
    # Whole pixels: distortions then turn the shape about exactly its own centre (see shifts.apply).
    cx = np.round(qx + rng.uniform(-1, 1, size=n) * room)
    cy = np.round(qy + rng.uniform(-1, 1, size=n) * room)
    return ShapeParams(
        label=label.astype(np.int64),
        quadrant=quadrant,
        cx=cx.astype(np.float32),
        cy=cy.astype(np.float32),
        radius=radius.astype(np.float32),
        angle=rng.uniform(-angle_jitter, angle_jitter, size=n).astype(np.float32),
        fg=rng.integers(fg_range[0], fg_range[1] + 1, size=n).astype(np.uint8),
        bg=rng.integers(bg_range[0], bg_range[1] + 1, size=n).astype(np.uint8),
    )


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SUBPIXEL_BITS)).astype(np.int32)


def star_mask(image_size: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Five-pointed star (inner/outer radius 0.4), anti-aliased coverage in [0, 1]."""
    k = np.arange(10)
    r = np.where(k % 2 == 0, radius, 0.4 * radius)
    theta = np.deg2rad(angle - 90.0) + k * np.pi / 5  # first point straight up
    pts = np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], axis=1)
    canvas = np.zeros((image_size, image_size), np.uint8)
    cv2.fillPoly(canvas, [_fixed(pts - 0.5)], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
    return canvas.astype(np.float32) / 255.0


def moon_mask(image_size: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Crescent: a disc minus a smaller disc shifted along `angle` (horns open to the right at 0)."""

    def disc(x: float, y: float, r: float) -> np.ndarray:
        canvas = np.zeros((image_size, image_size), np.uint8)
        centre = tuple(int(v) for v in _fixed(np.array([x - 0.5, y - 0.5])))
        cv2.circle(
            canvas, centre, int(round(r * (1 << _SUBPIXEL_BITS))), 255, -1, cv2.LINE_AA, _SUBPIXEL_BITS
        )
        return canvas.astype(np.float32) / 255.0

    a = np.deg2rad(angle)
    outer = disc(cx, cy, radius)
    inner = disc(cx + 0.55 * radius * np.cos(a), cy + 0.55 * radius * np.sin(a), 0.85 * radius)
    return np.clip(outer - inner, 0.0, 1.0)


def shape_mask(label: int, image_size: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    draw = star_mask if label == STAR else moon_mask
    return draw(image_size, float(cx), float(cy), float(radius), float(angle))


def render_masks(params: ShapeParams, image_size: int) -> np.ndarray:
    """Coverage masks, float32 (N, S, S)."""
    out = np.empty((len(params), image_size, image_size), np.float32)
    for i in range(len(params)):
        out[i] = shape_mask(
            int(params.label[i]), image_size, params.cx[i], params.cy[i], params.radius[i], params.angle[i]
        )
    return out


def composite(mask: np.ndarray, fg: float | np.ndarray, background: np.ndarray) -> np.ndarray:
    """Put a shape of grey level `fg` over an (S, S, 3) background; returns uint8 RGB."""
    m = mask[..., None]
    out = background.astype(np.float32) * (1.0 - m) + np.float32(fg) * m
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def plain_background(image_size: int, level: int) -> np.ndarray:
    return np.full((image_size, image_size, 3), level, np.uint8)


def render(params: ShapeParams, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, S, S, 3) and coverage masks float32 (N, S, S) for plain backgrounds."""
    masks = render_masks(params, image_size)
    images = np.empty((len(params), image_size, image_size, 3), np.uint8)
    for i in range(len(params)):
        images[i] = composite(masks[i], params.fg[i], plain_background(image_size, int(params.bg[i])))
    return images, masks
