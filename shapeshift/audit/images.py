"""A folder of deployment images, read the way a run's data was made; labelled when it has one subfolder
per class (`star/`, `moon/`), unlabelled otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shapeshift.data.images import read_image


@dataclass
class Folder:
    names: list[str] = field(default_factory=list)  # relative to the folder: `moon/0001.png`
    images: np.ndarray | None = None
    labels: np.ndarray | None = None  # None: unlabelled
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return self.labels is not None


def read_folder(
    folder: Path, size: int, channels: int, class_names: tuple[str, ...], resize: str = "stretch"
) -> Folder:
    """Labelled when subfolders are named after classes (case ignored); then only their images are read.
    `resize`: the run's own policy (`data.resize` of a folder run; the star/moon runs' `stretch`)."""
    by_name = {c.lower(): i for i, c in enumerate(class_names)}
    class_dirs = {
        p: by_name[p.name.lower()] for p in folder.iterdir() if p.is_dir() and p.name.lower() in by_name
    }
    sources = (
        [(p, label) for d, label in sorted(class_dirs.items()) for p in sorted(d.iterdir()) if p.is_file()]
        if class_dirs
        else [(p, None) for p in sorted(folder.iterdir()) if p.is_file()]
    )
    out, images, labels = Folder(), [], []
    for path, label in sources:
        name = str(path.relative_to(folder))
        try:
            images.append(read_image(path, size, channels, resize))
        except (ValueError, OSError) as err:
            out.skipped.append((name, str(err)))
            continue
        out.names.append(name)
        labels.append(label)
    out.images = np.stack(images) if images else np.empty((0, size, size, channels), np.uint8)
    out.labels = np.asarray(labels, np.int64) if class_dirs else None
    return out
