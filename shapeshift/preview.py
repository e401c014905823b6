"""Draw the evaluation suite before running it: one row per set, i.i.d. data on top.

python -m shapeshift.preview                       # -> outputs/preview.png
python -m shapeshift.preview out=docs/catalog.png examples=10 shift.families=[rotation,scale]
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="preview")
def main(cfg: DictConfig) -> None:
    datamodule = instantiate(cfg.data, shift=OmegaConf.to_container(cfg.shift, resolve=True))
    path = draw(datamodule, Path(cfg.out), cfg.examples)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
