"""Real handwritten digits as an image folder: scikit-learn's `load_digits` (1,797 8 x 8 scans of 43
writers, UCI "Optical Recognition of Handwritten Digits", shipped inside scikit-learn), upsampled and
written as `<out>/<digit>/<index>.png` for `data=folder`. Nothing is downloaded.

    python -m shapeshift.data.digits /tmp/digits --size 32
    python -m shapeshift.train -m experiment=digits_study data.root=/tmp/digits
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def write_digits_folder(out: str | Path, size: int = 32) -> int:
    """Every digit as a grey PNG of `size` px (bicubic from 8 x 8, dark ink on white as on paper)."""
    from sklearn.datasets import load_digits

    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; name a new folder (nothing was written)")
    digits = load_digits()
    for k in range(10):
        (out / str(k)).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        ink = cv2.resize((img / 16.0).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        pixels = np.clip(np.rint(255 * (1 - ink)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(out / str(label) / f"{i:04d}.png")
    return len(digits.target)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shapeshift.data.digits", description=__doc__.split("\n")[0]
    )
    parser.add_argument("out", help="a new or empty folder")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    args = parser.parse_args()
    print(f"wrote {write_digits_folder(args.out, args.size)} digits to {args.out}")


if __name__ == "__main__":
    main()
