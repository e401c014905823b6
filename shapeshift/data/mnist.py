"""`MnistDataModule`: MNIST read from the standard IDX files in a folder you name; nothing is downloaded.

    python -m shapeshift.train data=mnist data.root=/path/to/mnist arch=maxpool

The folder holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
`t10k-labels-idx1-ubyte`, each optionally gzipped (`.gz`), also under the names with a dot
(`train-images.idx3-ubyte`) or in torchvision's `MNIST/raw/` subfolder. The module has the interface the
training loop uses from `ShapesDataModule`: uint8 NHWC arrays, uint8 NCHW batches scaled to [-1, 1] on the
device, (image, label, set index) test batches. Its evaluation sets are the i.i.d. test set (`iid`) and,
with `shift=corruptions`, the pixel catalog on the test digits (the star/moon catalog needs a renderer).
"""

from __future__ import annotations

import gzip
import math
import struct
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from shapeshift.config.errors import ConfigError
from shapeshift.data import IID
from shapeshift.data.augment import Augmentation
from shapeshift.data.base import ArrayDataModule

NATIVE_SIZE = 28
NUM_CLASSES = 10
CLASS_NAMES = tuple(str(d) for d in range(NUM_CLASSES))
FILES = {  # split of the IDX files -> (images, labels)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one MNIST uses


def _variants(name: str) -> list[str]:
    dotted = name.replace("-idx", ".idx")  # the names some mirrors use: train-images.idx3-ubyte
    return [name, f"{name}.gz", dotted, f"{dotted}.gz"]


def find_file(root: str | Path, name: str) -> Path | None:
    """The file `name` (or a variant: gzipped, dotted) in `root` or in torchvision's `root/MNIST/raw`."""
    root = Path(root).expanduser()
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in _variants(name):
            if (folder / candidate).is_file():
                return folder / candidate
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) as a uint8 array of the shape its header gives."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise ConfigError(f"cannot read MNIST file {path}: {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ConfigError(f"{path} is not an IDX file (bad magic number)")
    if data[2] != UBYTE:
        raise ConfigError(f"{path} holds IDX type 0x{data[2]:02x}; MNIST files hold unsigned bytes (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigError(f"{path} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise ConfigError(
            f"{path} should hold {expected} bytes of data for shape {dims}, found {len(data) - header}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def missing_files(root: str | Path) -> list[str]:
    return [name for pair in FILES.values() for name in pair if find_file(root, name) is None]


def load_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of the `train` or `test` IDX files in `root`."""
    if root is None:
        raise ConfigError(
            "data=mnist needs data.root=<folder with the MNIST IDX files> (nothing is downloaded)"
        )
    if not Path(root).expanduser().is_dir():
        raise ConfigError(f"data.root={root} is not a folder (data=mnist reads the MNIST IDX files from it)")
    missing = missing_files(root)
    if missing:
        raise ConfigError(
            f"data.root={root} lacks the MNIST files {', '.join(missing)} "
            "(each may be .gz; nothing is downloaded)"
        )
    image_path, label_path = (find_file(root, name) for name in FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise ConfigError(
            f"{image_path} / {label_path}: expected images (N, H, W) and labels (N,), "
            f"got {images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise ConfigError(f"{image_path} holds {len(images)} images but {label_path} {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise ConfigError(f"{label_path} holds label {labels.max()}; MNIST labels are 0..9")
    return images, labels.astype(np.int64)


class MnistDataModule(ArrayDataModule):
    """MNIST from IDX files: train/val split carved from the training file by `seed`, the t10k test set.

    `n_train_per_class`, `n_val_per_class` and `n_test_per_class` are upper bounds per digit: validation
    takes `n_val_per_class` images of each digit from a fixed (seeded) permutation of the training file,
    training the next `n_train_per_class`; the test set the first `n_test_per_class` of each digit in file
    order. Large bounds (the defaults in conf/data/mnist.yaml) mean all of MNIST.
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = NATIVE_SIZE,
        channels: int = 1,
        num_classes: int = NUM_CLASSES,
        n_train_per_class: int = 7000,
        n_val_per_class: int = 500,
        n_test_per_class: int = 1200,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        train_transform: Augmentation | None = None,
        train_seed: int = 0,
        cache_dir: str | None = None,
        shift: Mapping | None = None,
        **_: object,
    ):
        super().__init__()
        self.root = root
        self.image_size, self.channels, self.configured_classes = image_size, channels, num_classes
        self.sizes = {"train": n_train_per_class, "val": n_val_per_class, "test": n_test_per_class}
        self.seed, self.batch_size, self.eval_batch_size = seed, batch_size, eval_batch_size
        self.num_workers = num_workers
        self.train_transform, self.train_seed = train_transform, train_seed
        self.num_classes = NUM_CLASSES
        self.class_names = CLASS_NAMES
        self._sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.cache_dir = cache_dir
        self.use_catalog(shift, renders=False)

    # -- the sets ---------------------------------------------------------------------------------------
    @property
    def test_set_names(self) -> list[str]:
        return [IID, *self.catalog_set_names()]

    def test_identity(self) -> dict:
        path = find_file(self.root, FILES["test"][0])
        stat = path.stat() if path else None
        return {
            "mnist": str(path),
            "bytes": stat.st_size if stat else None,
            "mtime": stat.st_mtime_ns if stat else None,
            "size": self.image_size,
            "channels": self.channels,
            "n_test_per_class": self.sizes["test"],
        }

    def _check(self) -> None:
        """Config problems, raised where train() turns them into one line (not inside instantiate)."""
        if self.channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 (or 3: grey repeated) for MNIST, got {self.channels}")
        if self.configured_classes != NUM_CLASSES:
            raise ConfigError(
                f"data.num_classes must be {NUM_CLASSES} for MNIST, got {self.configured_classes}"
            )

    def _format(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) -> (N, S, S, C) uint8: resized to `image_size`, grey repeated to `channels`."""
        if self.image_size != images.shape[1] or self.image_size != images.shape[2]:
            interp = cv2.INTER_AREA if self.image_size < images.shape[1] else cv2.INTER_LINEAR
            size = (self.image_size, self.image_size)
            images = (
                np.stack([cv2.resize(img, size, interpolation=interp) for img in images])
                if len(images)
                else np.empty((0, *size), np.uint8)
            )
        return np.ascontiguousarray(np.repeat(images[..., None], self.channels, axis=3))

    def _split_indices(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Indices of the training file for `train` and `val`: a seeded permutation, split per digit."""
        order = np.random.default_rng(np.random.SeedSequence([self.seed, 28])).permutation(len(labels))
        n_val, n_train = self.sizes["val"], self.sizes["train"]
        val, train = [], []
        for digit in range(NUM_CLASSES):
            idx = order[labels[order] == digit]
            if len(idx) <= n_val:
                raise ConfigError(
                    f"data.n_val_per_class={n_val} leaves no training image of digit {digit} "
                    f"({len(idx)} in {self.root})"
                )
            val.append(idx[:n_val])
            train.append(idx[n_val : n_val + n_train])
        return {"val": np.sort(np.concatenate(val)), "train": np.sort(np.concatenate(train))}

    def _load(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._sets:
            self._check()
            if name == IID:
                self._sets[name] = self._load("test")
            elif name == "test":
                images, labels = load_split(self.root, "test")
                keep = np.sort(
                    np.concatenate(
                        [np.flatnonzero(labels == d)[: self.sizes["test"]] for d in range(NUM_CLASSES)]
                    )
                )
                self._sets[name] = (self._format(images[keep]), labels[keep])
            elif name in ("train", "val"):
                images, labels = load_split(self.root, "train")
                for split, idx in self._split_indices(labels).items():
                    self._sets[split] = (self._format(images[idx]), labels[idx])
            elif name in self.catalog_set_names():
                data = self.pixel_set(name)
                self._sets[name] = (data["images"], data["labels"])
            else:
                raise KeyError(f"unknown MNIST set {name!r}; choose from train, val, test, {IID}")
        return self._sets[name]

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Images (N, S, S, C) uint8 and int64 labels of a split (`train`, `val`, `test`) or `iid`."""
        return self._load(name)

    # -- Lightning hooks --------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Fails here, with one line, on a missing folder, missing files or a broken file.
        for name in ("train", "test"):
            self._load(name)
        self.make_sets(self.catalog_set_names(), "data: shift catalog")
