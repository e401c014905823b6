"""Audit a folder of real deployment images with a trained run: predictions, confidence, o.o.d. flags.

    python -m shapeshift.audit run=<run dir> images=<folder>

Each image is converted the way the run's data was made (RGB, white behind transparency, resized to
`data.image_size`). An image is flagged o.o.d. when its maximum softmax probability falls below the
threshold that keeps `keep` (95%) of the run's i.i.d. validation images. Writes `audit.csv`,
`skipped.csv` and `contact_sheet.png` into `<run>/audit/<folder name>/` (or `out=`), never into the
image folder.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

from shapeshift.config import ConfigError  # noqa: E402
from shapeshift.data.base import model_input  # noqa: E402
from shapeshift.loggers import silence_known_noise  # noqa: E402
from shapeshift.pipeline import build_datamodule  # noqa: E402
from shapeshift.restore import load_model, load_run_config  # noqa: E402
from shapeshift.runtime import fast_cpu_math  # noqa: E402

fast_cpu_math()  # before torch starts its thread pool (see runtime.py: denormals slow CPU backward 3-5x)


@dataclass
class Prediction:
    file: str
    image: np.ndarray
    label: int
    confidence: float
    flagged: bool


def read_image(path: Path, size: int, channels: int = 3) -> np.ndarray:
    """uint8 (size, size, channels), RGB or grey as the run's data; ValueError with a short reason for
    anything unusable."""
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    try:
        with Image.open(path) as img:
            img.load()  # decodes fully: a truncated file fails here, not later
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            img = img.convert("RGB" if channels == 3 else "L").resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
    except UnidentifiedImageError:
        raise ValueError("not an image file") from None
    except (OSError, SyntaxError) as err:
        raise ValueError(f"unreadable image ({err})") from None


@torch.no_grad()
def confidences(model, images: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    probs = [model(model_input(images[i : i + batch])).softmax(1) for i in range(0, len(images), batch)]
    p = torch.cat(probs) if probs else torch.empty(0, model.num_classes)
    return p.argmax(1).numpy(), p.amax(1).numpy()


def contact_sheet(predictions: list[Prediction], path: Path, limit: int, threshold: float,
                  class_names: tuple[str, ...]) -> Path:
    """Flagged images first, then the least confident, lowest confidence first."""
    chosen = sorted(predictions, key=lambda p: (not p.flagged, p.confidence))[:limit]
    cols = min(8, max(1, len(chosen)))
    rows = max(1, -(-len(chosen) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p in zip(axes.flat, chosen, strict=False):
        ax.imshow(p.image.squeeze(), cmap="gray", vmin=0, vmax=255)  # the colormap applies to grey only
        ax.set_title(f"{p.file[:16]}\n{class_names[p.label]} {p.confidence:.2f}{' OOD' if p.flagged else ''}",
                     fontsize=7, color="crimson" if p.flagged else "black")
    fig.suptitle(f"flagged (red) and least confident images; threshold {threshold:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def audit(run: str, images: str, out: str | None = None, keep: float = 0.95, sheet: int = 48) -> dict:
    run_dir, folder = Path(run).expanduser().resolve(), Path(images).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"images={folder} is not a folder")
    if not 0 < keep < 1:
        raise ConfigError(f"keep must be between 0 and 1 (share of i.i.d. images not flagged), got {keep}")
    out_dir = Path(out).expanduser().resolve() if out else run_dir / "audit" / folder.name
    if out_dir == folder or folder in out_dir.parents:
        raise ConfigError(f"out={out_dir} is inside the image folder; the audit never writes there")
    cfg = load_run_config(run_dir)
    cfg.shift.families = {}
    datamodule = build_datamodule(cfg, augment=False)
    model = load_model(run_dir, cfg, datamodule.test_set_names)

    # The threshold comes from the run's own i.i.d. validation images.
    _, val_conf = confidences(model, datamodule.arrays("val")[0])
    threshold = float(np.quantile(val_conf, 1 - keep))
    iid_flagged = float((val_conf < threshold).mean())

    size, channels, classes = cfg.data.image_size, datamodule.channels, datamodule.class_names
    good, skipped = [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            good.append((path.name, read_image(path, size, channels)))
        except (ValueError, OSError) as err:
            skipped.append((path.name, str(err)))
    arrays = np.stack([a for _, a in good]) if good else np.empty((0, size, size, channels), np.uint8)
    labels, conf = confidences(model, arrays)
    predictions = [Prediction(name, arr, int(lab), float(c), bool(c < threshold))
                   for (name, arr), lab, c in zip(good, labels, conf, strict=True)]

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "audit.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "predicted_class", "confidence", "ood_flag"])
        w.writerows([p.file, classes[p.label], f"{p.confidence:.6f}", int(p.flagged)] for p in predictions)
    with open(out_dir / "skipped.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "reason"])
        w.writerows(skipped)
    if predictions:
        contact_sheet(predictions, out_dir / "contact_sheet.png", sheet, threshold, classes)
    flagged = sum(p.flagged for p in predictions) / len(predictions) if predictions else 0.0
    return {"out": out_dir, "n": len(predictions), "skipped": skipped, "flagged": flagged,
            "threshold": threshold, "iid_flagged": iid_flagged, "keep": keep,
            "classes": {c: sum(p.label == i for p in predictions) for i, c in enumerate(classes)}}


def summary(result: dict) -> str:
    n = result["n"]
    lines = [f"audited {n} images ({len(result['skipped'])} skipped) -> {result['out']}",
             f"o.o.d. threshold: max softmax probability < {result['threshold']:.4f} "
             f"(keeps {result['keep']:.0%} of the run's i.i.d. validation images)",
             f"flagged o.o.d.: {result['flagged']:.1%} (i.i.d. validation: {result['iid_flagged']:.1%})",
             "predicted classes: " + ", ".join(f"{c} {k}" for c, k in result["classes"].items())]
    for name, reason in result["skipped"]:
        lines.append(f"  skipped {name}: {reason}")
    if n and result["flagged"] >= max(3 * result["iid_flagged"], 0.15):
        lines.append(f"WARNING: {result['flagged']:.0%} of these images look unlike the data this model was "
                     f"trained on, against {result['iid_flagged']:.0%} of its own validation images. Its "
                     "predictions on them are not trustworthy: look at contact_sheet.png before relying on it.")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="audit")
def main(cfg: DictConfig) -> None:
    silence_known_noise()
    try:
        result = audit(cfg.run, cfg.images, cfg.out, cfg.keep, cfg.sheet)
    except ConfigError as err:
        print(f"shapeshift: {err}", file=sys.stderr)
        sys.exit(2)
    print(summary(result))


if __name__ == "__main__":
    main()
