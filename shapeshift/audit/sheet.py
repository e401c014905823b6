"""The audit's contact sheet: the most suspicious images first (lowest gate score), flagged ones in red."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def contact_sheet(
    path: Path,
    images: np.ndarray,
    names: list[str],
    captions: list[str],
    scores: np.ndarray,
    flagged: np.ndarray,
    limit: int,
    title: str,
) -> Path:
    order = np.argsort(scores, kind="stable")[:limit]
    cols = min(8, max(1, len(order)))
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order, strict=False):
        ax.imshow(images[i].squeeze(), cmap="gray", vmin=0, vmax=255)  # the colormap applies to grey only
        ax.set_title(
            f"{Path(names[i]).name[:16]}\n{captions[i]}{' OOD' if flagged[i] else ''}",
            fontsize=7,
            color="crimson" if flagged[i] else "black",
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
