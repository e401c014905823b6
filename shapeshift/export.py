"""Write any data module's splits as an image folder that `data=folder` reads back, losslessly (PNG).

    python -m shapeshift.export data=shapes out=/tmp/shapes_folder
    python -m shapeshift.train data=folder data.root=/tmp/shapes_folder shift=corruptions

Layout: `<out>/<split>/<class>/<index>.png`, the index being the image's place in its split, zero-padded,
so that the folder's sorted order within a class is the data module's; `<out>/classes.txt` lists the
classes in label order, so the folder's label indices are the data module's too. What `data=folder` then
trains on is the same pixels and labels; docs/your-data.md says what differs (the order across classes).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image

import shapeshift.config.schema  # noqa: F401 - the schemas the config composes against
from shapeshift.config.errors import ConfigError
from shapeshift.console.errors import command_errors
from shapeshift.console.progress import track
from shapeshift.data.folder import CLASS_ORDER_FILE

SPLITS = ("train", "val", "test")


def export(datamodule, out: str | Path, splits=SPLITS) -> dict[str, int]:
    """Every image of `splits` as a PNG under `out`; returns images written per split."""
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"out={out} is not empty; name a new folder (nothing was written)")
    written = {}
    out.mkdir(parents=True, exist_ok=True)
    (out / CLASS_ORDER_FILE).write_text("".join(f"{name}\n" for name in datamodule.class_names))
    for split in splits:
        images, labels = datamodule.arrays(split)
        width = max(6, len(str(len(labels))))
        for name in datamodule.class_names:
            (out / split / str(name)).mkdir(parents=True, exist_ok=True)
        for i in track(range(len(labels)), f"export: {split}"):
            img = np.asarray(images[i])
            img = img[..., 0] if img.shape[-1] == 1 else img
            cls = datamodule.class_names[int(labels[i])]
            Image.fromarray(img).save(out / split / str(cls) / f"{i:0{width}d}.png", optimize=False)
        written[split] = len(labels)
    return written


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    with command_errors():
        datamodule = instantiate(cfg.data)
        counts = export(datamodule, cfg.out, list(cfg.splits))
    print(f"wrote {', '.join(f'{k} {v}' for k, v in counts.items())} images to {cfg.out}")


if __name__ == "__main__":
    main()
