"""Where a model looks: Grad-CAM maps (torchcam) over images of chosen evaluation sets, drawn as a grid.

A model that classifies by shape lights up the shape; one that learned the quadrant lights up wherever
the quadrant's evidence is, often the shape's corner of the image or the border. Grad-CAM (Selvaraju et
al. 2017) weighs the last feature map's channels by their gradients; torchcam finds that layer itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchcam.methods import GradCAM  # noqa: E402

from shapeshift.data.base import model_input  # noqa: E402
from shapeshift.engine.runtime import AUTO, device_for  # noqa: E402

logging.getLogger("torchcam").setLevel(logging.ERROR)  # it announces the layer it picks, twice per call


def balanced(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first images of each class in turn, `n` in all: a grid row shows every class."""
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [idx[i] for i in range(max(map(len, per_class))) for idx in per_class if i < len(idx)]
    return np.asarray(order[:n], dtype=np.int64)


def gradcam(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maps in [0, 1] at the images' size, predicted classes) of uint8 NHWC images, on the model's device."""
    backbone = model.backbone.eval()
    x = model_input(images).to(next(backbone.parameters()).device)
    with GradCAM(backbone, input_shape=tuple(x.shape[1:])) as extractor:
        x.requires_grad_(True)
        scores = backbone(x)
        predicted = scores.argmax(1)
        (maps,) = extractor(predicted.tolist(), scores)
    maps = F.interpolate(maps[:, None].float(), size=images.shape[1:3], mode="bilinear", align_corners=False)[
        :, 0
    ]
    return maps.clamp(0, 1).detach().cpu().numpy(), predicted.cpu().numpy()


def grid_figure(rows: list[dict], class_names: tuple[str, ...], title: str) -> plt.Figure:
    """One row per set: each image with its map over it, titled true -> predicted; a colour scale."""
    cols = max(len(r["images"]) for r in rows)
    fig, axes = plt.subplots(
        len(rows),
        cols,
        figsize=(1.7 * cols + 1.0, 1.9 * len(rows) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.axis("off")
    overlay = None
    for r, row in enumerate(rows):
        for c, (img, cam, y, p) in enumerate(
            zip(row["images"], row["maps"], row["labels"], row["predicted"], strict=True)
        ):
            ax = axes[r, c]
            ax.imshow(img.squeeze(), cmap="gray", vmin=0, vmax=255)
            overlay = ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_title(
                f"{class_names[y]} -> {class_names[p]}", fontsize=7, color="black" if y == p else "crimson"
            )
        axes[r, 0].text(
            -0.08,
            0.5,
            row["set"],
            transform=axes[r, 0].transAxes,
            rotation=90,
            ha="right",
            va="center",
            fontsize=8,
        )
    # torchcam rescales each map to [0, 1] (min-max after the ReLU): a colour compares places in one image,
    # not one image's map with another's.
    bar = fig.colorbar(overlay, ax=axes, shrink=0.8, fraction=0.03)
    bar.set_label("Grad-CAM for the predicted class,\nscaled per image (1: its maximum)", fontsize=8)
    fig.suptitle(title, fontsize=9, wrap=True)
    return fig


def draw_grid(path: Path, rows: list[dict], class_names: tuple[str, ...], title: str) -> Path:
    """`grid_figure` written to `path`."""
    fig = grid_figure(rows, class_names, title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


@torch.enable_grad()
def explain_sets(model, datamodule, sets: list[str], n: int, accelerator: str = AUTO) -> list[dict]:
    """Grad-CAM rows of `n` images per set, on the device `accelerator` chooses (`auto`: the GPU when there is
    one); the images go where the model is (`gradcam`), the maps come back to the CPU."""
    model = model.to(device_for(accelerator))
    rows = []
    for name in sets:
        images, labels = datamodule.arrays(name)
        pick = balanced(labels, n)
        maps, predicted = gradcam(model, images[pick])
        rows.append(
            {
                "set": name,
                "images": images[pick],
                "labels": labels[pick],
                "maps": maps,
                "predicted": predicted,
            }
        )
    return rows
