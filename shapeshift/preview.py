"""Draw the evaluation suite before running it: one row per set, i.i.d. data on top.

python -m shapeshift.preview                       # -> outputs/preview.png
python -m shapeshift.preview out=docs/catalog.png examples=10 shift.families=[rotation,scale]
python -m shapeshift.preview data=folder data.root=<dir> shift=corruptions severities=[1,3,5]  # one image
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

import shapeshift.config.schema  # noqa: E402,F401 - the schemas the config composes against

log = logging.getLogger("shapeshift")


def mosaic(datamodule, names: list[str], examples: int) -> tuple[np.ndarray, list[str]]:
    """The first `examples` images of each set side by side (classes in turn), one row per set."""
    rows, labels = [], []
    classes = datamodule.class_names  # the data module's own: `data=mnist` has ten, the shapes two
    for name in names:
        images, y = datamodule.arrays(name)
        per_class = [
            np.flatnonzero(y == c)[: max(1, -(-examples // len(classes)))] for c in range(len(classes))
        ]
        order = [i for pair in zip(*per_class, strict=False) for i in pair][:examples]
        rows.append(
            np.concatenate(
                [np.pad(images[i], ((1, 1), (1, 1), (0, 0)), constant_values=255) for i in order], axis=1
            )
        )
        labels.append(" ".join(str(classes[y[i]])[0] for i in order))
    return np.concatenate(rows, axis=0), labels


def draw(datamodule, out: Path, examples: int = 8) -> Path:
    names = datamodule.test_set_names
    grid, classes = mosaic(datamodule, names, examples)
    cell = grid.shape[0] / len(names)
    fig, ax = plt.subplots(figsize=(0.6 * examples, 0.6 * len(names)), dpi=100)
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks(
        (np.arange(len(names)) + 0.5) * cell,
        [f"{n}   ({c})" for n, c in zip(names, classes, strict=True)],
        fontsize=8,
    )
    ax.set_xticks([])
    key = ", ".join(f"{str(c)[0]} = {c}" for c in datamodule.class_names)
    ax.set_title(f"evaluation sets ({key}); top row: i.i.d. test data", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


def severity_sheet(datamodule, out: Path, severities: list[int], index: int = 0) -> Path:
    """One test image under every family at the given severities: a row per family, the i.i.d. image
    first. Every set is drawn from the same first test images of each class, in order, so position
    `index` of class 0 is the same source image in each."""
    families = list(dict.fromkeys(n.rsplit("/s", 1)[0] for n in datamodule.test_set_names if "/s" in n))
    if not families:
        raise SystemExit("preview severities=...: this catalog has no families with severities")

    def image(name: str) -> np.ndarray:
        images, y = datamodule.arrays(name)
        return images[np.flatnonzero(y == 0)[index]]

    clean = image("iid")
    grey = clean.shape[-1] == 1
    columns = ["i.i.d.", *(f"s{k}" for k in severities)]
    fig, axes = plt.subplots(
        len(families),
        len(columns),
        figsize=(1.1 * len(columns) + 1.6, 1.1 * len(families) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for row, family in zip(axes, families, strict=True):
        for ax, k in zip(row, [0, *severities], strict=True):
            picture = clean if k == 0 else image(f"{family}/s{k}")
            ax.imshow(picture[..., 0] if grey else picture, cmap="gray" if grey else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(family, rotation=0, ha="right", va="center", fontsize=8)
    for ax, title in zip(axes[0], columns, strict=True):
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"one test image ({datamodule.class_names[0]}) under each family", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight", dpi=100)
    plt.close(fig)
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="preview")
def main(cfg: DictConfig) -> None:
    datamodule = instantiate(cfg.data, shift=OmegaConf.to_container(cfg.shift, resolve=True))
    if cfg.severities:
        path = severity_sheet(datamodule, Path(cfg.out), list(cfg.severities))
    else:
        path = draw(datamodule, Path(cfg.out), cfg.examples)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
