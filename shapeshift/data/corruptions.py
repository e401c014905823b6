"""Image-level shifts for any image: the ImageNet-C corruptions and geometric shifts
(conf/shift/corruptions.yaml).

Each operation maps a uint8 (H, W, C) image (C = 1 or 3) and a random generator to a uint8 image of the
same shape. The formulas and the per-severity parameters (in the YAML) are those of Hendrycks & Dietterich
(2019) for 64-pixel images, `make_tinyimagenet_c.py` in github.com/hendrycks/robustness; lengths in pixels
(blur radii, the fog map, the frost crop) scale with the image side / 64. Where Albumentations computes
the same formula it does the work (glass and zoom blur, JPEG, Gaussian blur, spatter); the rest is a few
lines of numpy/cv2 here, because the reference package `imagecorruptions` 1.1.2 no longer imports (it needs
`pkg_resources` and scikit-image's removed `multichannel`) and Albumentations' own ShotNoise, SaltAndPepper,
Defocus and MotionBlur compute other formulas (gamma-space noise, per-pixel salt, integer radii, a
symmetric line kernel). Two departures from the reference, both because it runs ImageMagick: motion blur
and snow's streaks use imagecorruptions' numpy port of ImageMagick's one-sided motion kernel.

An image's corruption is drawn from its own generator, seeded with (seed, set name, the image's pixels):
the same image gets the same corruption in any order, batch or data set, so a star/moon test set and the
same pixels exported to a folder are corrupted identically.
"""

from __future__ import annotations

import hashlib
import math
import random
import zlib
from collections.abc import Callable, Mapping
from functools import cache
from io import BytesIO
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

REFERENCE_SIZE = 64  # the image side the published parameters are for (Tiny ImageNet-C)
FROST_DIR = Path(__file__).with_name("frost")  # imagecorruptions' frost photos (Apache-2.0), at 0.3x


def _float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _uint8(x: np.ndarray) -> np.ndarray:
    # As the reference saves them: clip to [0, 1], scale, truncate.
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _scale(img: np.ndarray) -> float:
    return min(img.shape[:2]) / REFERENCE_SIZE


def _albu(transform: A.BasicTransform, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    transform.set_random_state(rng, random.Random(int(rng.integers(2**63))))
    out = transform(image=np.ascontiguousarray(img))["image"]
    return out.reshape(img.shape)


# -- noise ---------------------------------------------------------------------------------------------
def gaussian_noise(img, rng, std):
    x = _float(img)
    return _uint8(x + rng.normal(scale=std, size=x.shape))


def shot_noise(img, rng, rate):
    return _uint8(rng.poisson(_float(img) * rate) / rate)


def impulse_noise(img, rng, amount):
    # scikit-image's random_noise(mode="s&p"): each value (not pixel) salt or pepper with p = amount.
    x = _float(img)
    hit = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    return _uint8(np.where(hit, salt.astype(np.float32), x))


def speckle_noise(img, rng, std):
    x = _float(img)
    return _uint8(x + x * rng.normal(scale=std, size=x.shape))


# -- blur ----------------------------------------------------------------------------------------------
def _disk(radius: float, alias_blur: float) -> np.ndarray:
    size = np.arange(-8, 9) if radius <= 8 else np.arange(-math.ceil(radius), math.ceil(radius) + 1)
    xs, ys = np.meshgrid(size, size)
    d = ((xs**2 + ys**2) <= radius**2).astype(np.float32)
    d /= d.sum()
    return cv2.GaussianBlur(d, (3, 3) if radius <= 8 else (5, 5), alias_blur)


def defocus_blur(img, rng, radius, alias_blur):
    if radius <= 0 and alias_blur <= 0:  # magnitude 0: the identity (cv2 rejects a zero-width kernel)
        return img
    kernel = _disk(radius * _scale(img), alias_blur)
    out = cv2.filter2D(_float(img), -1, kernel)
    return _uint8(out.reshape(img.shape))


@cache
def _glass(sigma, max_delta, iterations):
    return A.GlassBlur(sigma=sigma, max_delta=max_delta, iterations=iterations, mode="fast", p=1.0)


def glass_blur(img, rng, sigma, max_delta, iterations):
    if sigma <= 0 and max_delta <= 0:
        return img
    delta = max(1, round(max_delta * _scale(img)))
    return _albu(_glass(float(sigma), delta, int(iterations)), img, rng)


def _motion(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage as imagecorruptions ports it: a one-sided Gaussian of `sigma` over
    2 * radius + 1 pixels along `angle`, edges replicated."""
    width = int(2 * radius + 1)
    weights = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    dy_unit, dx_unit = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    pad = width
    padded = cv2.copyMakeBorder(x, pad, pad, pad, pad, cv2.BORDER_REPLICATE).reshape(
        x.shape[0] + 2 * pad, x.shape[1] + 2 * pad, *x.shape[2:]
    )
    out = np.zeros_like(x, dtype=np.float32)
    h, w = x.shape[:2]
    for i in range(width):
        dy = -math.ceil(i * dy_unit - 0.5)
        dx = -math.ceil(i * dx_unit - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break
        out += weights[i] * padded[pad - dy : pad - dy + h, pad - dx : pad - dx + w]
    return out


def motion_blur(img, rng, radius, sigma):
    if radius <= 0 or sigma <= 0:
        return img
    s = _scale(img)
    return _uint8(_motion(_float(img), radius * s, sigma * s, rng.uniform(-45, 45)))


@cache
def _zoom(max_zoom, step):
    return A.ZoomBlur(max_factor=(max_zoom, max_zoom), step_factor=(step, step), p=1.0)


def zoom_blur(img, rng, max_zoom, step):
    return _albu(_zoom(float(max_zoom), float(step)), img, rng)


@cache
def _gauss(sigma):
    return A.GaussianBlur(blur_limit=0, sigma_limit=(sigma, sigma), p=1.0)


def gaussian_blur(img, rng, sigma):
    if sigma <= 0:
        return img
    return _albu(_gauss(float(sigma) * _scale(img)), img, rng)


# -- weather -------------------------------------------------------------------------------------------
def _plasma(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """The diamond-square height map in [0, 1] that the reference's fog is made of (mapsize a power of 2)."""
    n = 1 << max(1, math.ceil(math.log2(size)))
    m = np.zeros((n, n))
    step, wibble = n, 100.0
    while step >= 2:
        half = step // 2
        corner = m[0:n:step, 0:n:step]
        square = corner + np.roll(corner, -1, axis=0)
        square += np.roll(square, -1, axis=1)
        m[half:n:step, half:n:step] = square / 4 + wibble * rng.uniform(-wibble, wibble, square.shape)
        dr, ul = m[half:n:step, half:n:step], m[0:n:step, 0:n:step]
        lt = dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        m[0:n:step, half:n:step] = lt / 4 + wibble * rng.uniform(-wibble, wibble, lt.shape)
        tt = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        m[half:n:step, 0:n:step] = tt / 4 + wibble * rng.uniform(-wibble, wibble, tt.shape)
        step //= 2
        wibble /= decay
    m -= m.min()
    return m / m.max()


def fog(img, rng, strength, decay):
    x = _float(img)
    peak = x.max()
    layer = _plasma(max(img.shape[:2]), decay, rng)[: img.shape[0], : img.shape[1], None]
    return _uint8((x + strength * layer) * peak / (peak + strength))


@cache
def _frost_images() -> tuple[np.ndarray, ...]:
    # The reference draws from the first five of its six photos (np.random.randint(5)); so do we.
    files = sorted(FROST_DIR.glob("frost*.png"))[:5]
    return tuple(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files)


def frost(img, rng, image, frost):
    h, w = img.shape[:2]
    texture = _frost_images()[int(rng.integers(5))]
    s = _scale(img)
    if s != 1.0 or texture.shape[0] < h or texture.shape[1] < w:
        f = max(s, (h + 1) / texture.shape[0], (w + 1) / texture.shape[1])
        texture = cv2.resize(texture, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
    y0, x0 = int(rng.integers(texture.shape[0] - h)), int(rng.integers(texture.shape[1] - w))
    crop = texture[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    return np.clip(image * img.astype(np.float32) + frost * crop, 0, 255).astype(np.uint8)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    h, w = x.shape[:2]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    out = cv2.resize(x[top : top + ch, left : left + cw], None, fx=factor, fy=factor)
    top, left = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
    return out[top : top + h, left : left + w]


def snow(img, rng, loc, scale, zoom, threshold, radius, sigma, blend):
    x = _float(img)
    layer = rng.normal(loc=loc, scale=scale, size=x.shape[:2]).astype(np.float32)
    layer = _clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = np.clip(layer, 0, 1)
    s = _scale(img)
    layer = _motion(layer, radius * s, sigma * s, rng.uniform(-135, -45))[..., None]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None] if x.shape[2] == 3 else x
    x = blend * x + (1 - blend) * np.maximum(x, grey * 1.5 + 0.5)
    return _uint8(x + layer + np.rot90(layer, k=2))


def spatter(img, rng, mean, std, sigma, threshold, intensity, mud):
    t = _spatter(float(mean), float(std), float(sigma), float(threshold), float(intensity), bool(mud))
    return _albu(t, img, rng)


@cache
def _spatter(mean, std, sigma, threshold, intensity, mud):
    return A.Spatter(
        mean=(mean, mean),
        std=(std, std),
        gauss_sigma=(sigma, sigma),
        cutout_threshold=(threshold, threshold),
        intensity=(intensity, intensity),
        mode="mud" if mud else "rain",
        p=1.0,
    )


# -- digital -------------------------------------------------------------------------------------------
def _hsv(img: np.ndarray, channel: int, factor: float, offset: float) -> np.ndarray:
    hsv = cv2.cvtColor(_float(img), cv2.COLOR_RGB2HSV)  # float: H in degrees, S and V in [0, 1]
    hsv[..., channel] = np.clip(hsv[..., channel] * factor + offset, 0, 1)
    return _uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def brightness(img, rng, delta):
    return _hsv(img, 2, 1.0, delta)


def saturate(img, rng, factor, offset):
    return _hsv(img, 1, factor, offset)


def global_contrast(img, rng, factor):
    x = _float(img)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return _uint8((x - mean) * factor + mean)


def elastic_transform(img, rng, alpha, sigma, affine):
    """The reference's elastic: a random affine of the centre square's corners (+-`affine` x size), then a
    smooth displacement field (`alpha` x size, smoothed over `sigma` x size)."""
    x = _float(img)
    h, w = x.shape[:2]
    size = min(h, w)
    centre = np.float32([h, w]) // 2
    side = size // 3
    pts1 = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    pts2 = pts1 + rng.uniform(-affine * size, affine * size, size=pts1.shape).astype(np.float32)
    x = cv2.warpAffine(x, cv2.getAffineTransform(pts1, pts2), (w, h), borderMode=cv2.BORDER_REFLECT_101)
    x = x.reshape(h, w, -1)
    field = []
    for _ in range(2):
        noise = rng.uniform(-1, 1, size=(h, w))
        smooth = gaussian_filter(noise, sigma * size, mode="reflect", truncate=3) if sigma > 0 else noise
        field.append((smooth * alpha * size).astype(np.float32))
    dx, dy = field
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = cv2.remap(x, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return _uint8(out.reshape(img.shape))


def pixelate(img, rng, factor):
    h, w = img.shape[:2]
    pil = Image.fromarray(img.squeeze(-1) if img.shape[2] == 1 else img)
    small = pil.resize((int(w * factor), int(h * factor)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BOX)).reshape(img.shape)


def jpeg_compression(img, rng, quality):
    # PIL, as the reference: its quality scale is libjpeg's (Albumentations' goes through cv2's encoder).
    buf = BytesIO()
    Image.fromarray(img.squeeze(-1) if img.shape[2] == 1 else img).save(buf, "JPEG", quality=int(quality))
    return np.asarray(Image.open(buf)).reshape(img.shape)


# -- geometric (this study's shifts, on any image) -----------------------------------------------------
def _warp(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    out = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(img.shape)


def translate(img, rng, fraction):
    """Moved by `fraction` of the side in a random direction; edges replicated."""
    h, w = img.shape[:2]
    angle = rng.uniform(0, 2 * math.pi)
    dx, dy = fraction * w * math.cos(angle), fraction * h * math.sin(angle)
    return _warp(img, np.float32([[1, 0, dx], [0, 1, dy]]))


def rescale(img, rng, factor):
    """Zoomed in by `factor` or out by 1 / `factor` (a coin flip) about the centre."""
    h, w = img.shape[:2]
    f = factor if rng.random() < 0.5 else 1.0 / factor
    return _warp(img, cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, f))


def rotate(img, rng, degrees):
    h, w = img.shape[:2]
    return _warp(img, cv2.getRotationMatrix2D((w / 2, h / 2), degrees * rng.choice((-1.0, 1.0)), 1.0))


def hflip(img, rng, share):
    """Mirrored left-right, `share` of the images (a flip has no degrees: severity is how many)."""
    return np.ascontiguousarray(img[:, ::-1]) if rng.random() < share else img


def border_crop(img, rng, fraction):
    """A window (1 - `fraction`) of the side at a random place, resized back: a border is lost."""
    h, w = img.shape[:2]
    ch, cw = max(1, round(h * (1 - fraction))), max(1, round(w * (1 - fraction)))
    y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    out = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(img.shape)


# name -> (function, its parameters, needs RGB: a grey image goes through RGB and back)
IMAGE_OPS: dict[str, tuple[Callable, frozenset[str], bool]] = {
    "gaussian_noise": (gaussian_noise, frozenset({"std"}), False),
    "shot_noise": (shot_noise, frozenset({"rate"}), False),
    "impulse_noise": (impulse_noise, frozenset({"amount"}), False),
    "speckle_noise": (speckle_noise, frozenset({"std"}), False),
    "defocus_blur": (defocus_blur, frozenset({"radius", "alias_blur"}), False),
    "glass_blur": (glass_blur, frozenset({"sigma", "max_delta", "iterations"}), False),
    "motion_blur": (motion_blur, frozenset({"radius", "sigma"}), False),
    "zoom_blur": (zoom_blur, frozenset({"max_zoom", "step"}), False),
    "gaussian_blur": (gaussian_blur, frozenset({"sigma"}), False),
    "snow": (snow, frozenset({"loc", "scale", "zoom", "threshold", "radius", "sigma", "blend"}), True),
    "frost": (frost, frozenset({"image", "frost"}), True),
    "fog": (fog, frozenset({"strength", "decay"}), False),
    "spatter": (spatter, frozenset({"mean", "std", "sigma", "threshold", "intensity", "mud"}), True),
    "brightness": (brightness, frozenset({"delta"}), True),
    "saturate": (saturate, frozenset({"factor", "offset"}), True),
    "global_contrast": (global_contrast, frozenset({"factor"}), False),
    "elastic_transform": (elastic_transform, frozenset({"alpha", "sigma", "affine"}), False),
    "pixelate": (pixelate, frozenset({"factor"}), False),
    "jpeg_compression": (jpeg_compression, frozenset({"quality"}), False),
    "translate": (translate, frozenset({"fraction"}), False),
    "rescale": (rescale, frozenset({"factor"}), False),
    "rotate": (rotate, frozenset({"degrees"}), False),
    "hflip": (hflip, frozenset({"share"}), False),
    "border_crop": (border_crop, frozenset({"fraction"}), False),
}


def is_image_level(ops: Mapping) -> bool:
    """True if a severity's operations all work on pixels (any data set), not on a rendered shape."""
    return bool(ops) and all(op in IMAGE_OPS for op in ops)


def image_seed(seed: int, set_name: str, img: np.ndarray) -> np.random.Generator:
    digest = hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=8).digest()
    seq = np.random.SeedSequence([seed, 7, zlib.crc32(set_name.encode()), int.from_bytes(digest, "little")])
    return np.random.default_rng(seq)


def corrupt(img: np.ndarray, ops: Mapping[str, Mapping], rng: np.random.Generator) -> np.ndarray:
    """One image under one severity's operations, in the order the YAML gives them."""
    out = img if img.ndim == 3 else img[..., None]
    for op, args in ops.items():
        fn, _, rgb = IMAGE_OPS[op]
        if rgb and out.shape[2] == 1:
            grey = fn(np.repeat(out, 3, axis=2), rng, **args)
            out = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)[..., None]
        else:
            out = fn(out, rng, **args)
    return out.reshape(img.shape)


def corrupt_set(images: np.ndarray, ops: Mapping[str, Mapping], seed: int, set_name: str) -> np.ndarray:
    """A set of uint8 (N, H, W, C) images under one severity, each from its own (seed, set, pixels) stream."""
    out = np.empty_like(images)
    for i, img in enumerate(images):
        out[i] = corrupt(img, ops, image_seed(seed, set_name, img))
    return out
