"""Image files decoded the one way every data set here uses: a training folder (`data=folder`) and the
audit's deployment images are read by the same function, so a model meets its deployment images as it met
its training ones.

Any mode Pillow opens: RGB, grey, RGBA and palette (white behind transparency), 16-bit grey (scaled to 8
bits, not clipped), CMYK; EXIF orientation is applied (a phone's portrait JPEG stands upright). Resizing:
`crop` scales the shorter side to `size` and cuts the centre square (shapes keep their proportions, the
edges of a long image are lost); `stretch` scales both sides to `size` (nothing is lost, shapes are
squashed: what the star/moon audit has always done).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# What is read as an image; other files in a folder (notes, .DS_Store, labels) are ignored, not skipped.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
RESIZE_POLICIES = ("crop", "stretch")


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _eight_bit(img: Image.Image) -> Image.Image:
    """16- and 32-bit grey to 8 bits by scaling (`convert("L")` would clip everything above 255 to white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        return Image.fromarray(np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8), "L")
    return img


def _resized(img: Image.Image, size: int, policy: str) -> Image.Image:
    if policy == "stretch":
        return img.resize((size, size), Image.Resampling.LANCZOS)
    w, h = img.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    img = img.resize(new, Image.Resampling.LANCZOS)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return img.crop((left, top, left + size, top + size))


def read_image(path: Path, size: int, channels: int = 3, resize: str = "stretch") -> np.ndarray:
    """uint8 (size, size, channels); ValueError with a short reason for anything unusable."""
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize policy {resize!r}: choose from {', '.join(RESIZE_POLICIES)}")
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    try:
        with Image.open(path) as img:
            img.load()  # decodes fully: a truncated file fails here, not later
            img = ImageOps.exif_transpose(img) or img
            img = _eight_bit(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            img = _resized(img.convert("RGB" if channels == 3 else "L"), size, resize)
            return np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
    except UnidentifiedImageError:
        raise ValueError("not an image file") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"unreadable image ({err})") from None
