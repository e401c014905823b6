"""`FolderDataModule`: your own labelled images, one subfolder per class, through the whole study.

    python -m shapeshift.train data=folder data.root=/path/to/images arch=maxpool

Layout: `root/<class>/<image>` (split here, seeded and stratified: `data.val_fraction` and
`data.test_fraction` of each class), or `root/train/<class>/...` with optional `root/val/` and
`root/test/` (a missing one is carved from train the same way). Class names are the folder names, sorted,
or in the order `root/classes.txt` lists them (one per line; `python -m shapeshift.export` writes it so a
data set keeps its label indices); every split must have train's classes. Files that are not images
(by suffix) are ignored; images that cannot be decoded are skipped and listed (`skipped.csv` beside the
cache), and more than `data.max_skipped` of them (a share) stops the run.

Decoded once: every image is decoded and resized (`data.resize`, see `shapeshift.data.images`) one at a
time into uint8 `.npy` files under `data.cache_dir`, keyed by the folder's content (each file's path, size
and modification time) and the decoding settings; later runs, data workers and DDP ranks memory-map the
same files, and an unchanged folder costs no decode. The evaluation sets are the i.i.d. test split (`iid`);
a star/moon shift catalog has no shape to move here; `shift=corruptions` (pixel operations) does.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shapeshift.config.errors import ConfigError
from shapeshift.console.progress import track
from shapeshift.data import IID
from shapeshift.data.augment import Augmentation
from shapeshift.data.base import ArrayDataModule
from shapeshift.data.images import RESIZE_POLICIES, is_image_file, read_image

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CACHE_VERSION = 1  # bump when decoding changes what a given folder produces
SKIPPED_FILE = "skipped.csv"
CLASS_ORDER_FILE = "classes.txt"  # optional: the class folders in label order, one per line


@dataclass(frozen=True)
class Source:
    path: Path
    label: int
    split: str | None  # from the folder layout; None: assigned by the seeded split


class FolderError(ConfigError):
    """A folder that cannot be a data set: said in one line, nothing written."""


def _class_dirs(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def scan(root: Path) -> tuple[tuple[str, ...], list[Source]]:
    """The class names and every image file, with the split its folder names (if the layout has splits)."""
    if not root.is_dir():
        raise FolderError(f"data.root={root} is not a folder (data=folder reads <root>/<class>/<image>)")
    top = _class_dirs(root)
    if "train" in top:
        layout = {s: _class_dirs(top[s]) for s in SPLITS if s in top}
        classes = tuple(layout["train"])
        for split, dirs in layout.items():
            if tuple(dirs) != classes:
                raise FolderError(
                    f"{root / split} has classes {sorted(dirs)}, train has {sorted(classes)}: "
                    "every split needs the same class folders"
                )
    else:
        layout, classes = {None: top}, tuple(top)
    if not classes:
        raise FolderError(f"data.root={root} holds no class folders (<root>/<class>/<image>)")
    if len(classes) < 2:
        raise FolderError(f"data.root={root} holds one class ({classes[0]}); a classifier needs two or more")
    classes = class_order(root, classes)
    sources = []
    for split, dirs in layout.items():
        for label, name in enumerate(classes):
            files = sorted(p for p in dirs[name].rglob("*") if is_image_file(p))
            if not files and split in (None, "train"):
                raise FolderError(f"class {name!r} has no images in {dirs[name]}")
            sources += [Source(p, label, split) for p in files]
    return classes, sources


def class_order(root: Path, classes: tuple[str, ...]) -> tuple[str, ...]:
    """The classes in `root/classes.txt`'s order when it exists (it must name each class folder once)."""
    listing = root / CLASS_ORDER_FILE
    if not listing.is_file():
        return classes
    names = tuple(line.strip() for line in listing.read_text().splitlines() if line.strip())
    if sorted(names) != sorted(classes):
        raise FolderError(
            f"{listing} lists {list(names)}, the class folders are {sorted(classes)}: list each folder once"
        )
    return names


def content_key(root: Path, sources: list[Source], settings: dict) -> str:
    """The folder's content as the cache sees it: each file's path, size and modification time."""
    h = hashlib.sha256(json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for s in sources:
        st = s.path.stat()
        h.update(
            f"{s.path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0{s.label}\0{s.split}\n".encode()
        )
    return h.hexdigest()[:16]


def assign_splits(labels: np.ndarray, given: list[str | None], fractions: dict[str, float], seed: int):
    """Each image's split: the folder's where the layout names one, else a seeded draw, stratified by
    class: `fractions[split]` of each class's unassigned images (rounded, at least one while any remain
    for train) go to val and test, the rest to train."""
    out = np.array([g or "" for g in given], dtype=object)
    missing = [s for s in ("val", "test") if s not in set(given)]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2024]))
    for label in np.unique(labels):
        pool = np.flatnonzero((labels == label) & np.isin(out, ["", "train"]))
        pool = pool[rng.permutation(len(pool))]
        start = 0
        for split in missing:
            n = min(max(1, round(fractions[split] * len(pool))), max(0, len(pool) - start - 1))
            out[pool[start : start + n]] = split
            start += n
        out[pool[start:]] = "train"
    return out


class FolderDataModule(ArrayDataModule):
    def __init__(
        self,
        root: str | None = None,
        image_size: int = 64,
        channels: int = 3,
        num_classes: int | None = None,
        resize: str = "crop",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        max_skipped: float = 0.01,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        cache_dir: str | None = None,
        train_transform: Augmentation | None = None,
        train_seed: int = 0,
        shift: Mapping | None = None,
        **_: object,  # the star/moon sizes: unused here
    ):
        super().__init__()
        if root is None:
            raise FolderError("data=folder needs data.root=<folder of class subfolders>")
        self.root = Path(root).expanduser()
        self.image_size, self.channels, self.configured_classes = image_size, channels, num_classes
        self.resize, self.max_skipped, self.seed = resize, max_skipped, seed
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.train_transform, self.train_seed = train_transform, train_seed
        self._check()
        self.class_names, self.sources = scan(self.root)
        self.num_classes = len(self.class_names)
        if num_classes not in (None, self.num_classes):
            raise FolderError(
                f"data.num_classes={num_classes}, but {self.root} holds {self.num_classes} classes "
                f"({', '.join(self.class_names)}); leave it out (null) to take the folder's"
            )
        self._sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.summary: dict = {}
        self.use_catalog(shift, renders=False)

    def _check(self) -> None:
        if self.channels not in (1, 3):
            raise FolderError(f"data.channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.resize not in RESIZE_POLICIES:
            raise FolderError(f"data.resize={self.resize!r}: choose from {', '.join(RESIZE_POLICIES)}")
        if not 0 <= self.max_skipped < 1:
            raise FolderError(f"data.max_skipped is a share in [0, 1), got {self.max_skipped}")
        for split, f in self.fractions.items():
            if not 0 < f < 0.5:
                raise FolderError(f"data.{split}_fraction must be in (0, 0.5), got {f}")

    @property
    def test_set_names(self) -> list[str]:
        return [IID, *self.catalog_set_names()]

    def test_identity(self) -> dict:
        return {"folder": self._cache_folder().name}

    def catalog_cache_dir(self) -> Path:
        return self._open()  # beside the decoded images: keyed by the same content

    # -- decoding, once ---------------------------------------------------------------------------------
    @property
    def settings(self) -> dict:
        return {
            "size": self.image_size,
            "channels": self.channels,
            "resize": self.resize,
            "seed": self.seed,
            "fractions": self.fractions,
            "classes": list(self.class_names),
        }

    def _cache_folder(self) -> Path:
        base = self.cache_dir or Path(tempfile.gettempdir()) / "shapeshift-folder-cache"
        return base / f"folder-{self.root.name}-{content_key(self.root, self.sources, self.settings)}"

    def _decode(self, target: Path) -> None:
        """Every image into one uint8 memory map, a file at a time (the folder is never all in memory at
        full size), then split; written to a temporary folder and renamed, so a reader never sees half."""
        n, size, c = len(self.sources), self.image_size, self.channels
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=target.name, dir=target.parent))
        try:
            pixels = np.lib.format.open_memmap(work / "all.npy", "w+", np.uint8, (n, size, size, c))
            ok, skipped, digests = np.zeros(n, bool), [], []
            for i, s in enumerate(track(self.sources, f"data: decoding {self.root.name}")):
                try:
                    pixels[i] = read_image(s.path, size, c, self.resize)
                except (ValueError, OSError) as err:
                    skipped.append((str(s.path.relative_to(self.root)), str(err)))
                    continue
                ok[i] = True
            if n and len(skipped) / n > self.max_skipped:
                raise FolderError(
                    f"{len(skipped)} of {n} images in {self.root} cannot be read (more than "
                    f"data.max_skipped={self.max_skipped}); first: {skipped[0][0]}: {skipped[0][1]}"
                )
            labels = np.array([s.label for s in self.sources], np.int64)
            kept = np.flatnonzero(ok)  # split among the readable images only: a broken file takes no place
            splits = np.full(n, "", dtype=object)
            given = [self.sources[i].split for i in kept]
            splits[kept] = assign_splits(labels[kept], given, self.fractions, self.seed)
            for i in np.flatnonzero(ok):
                digests.append(hashlib.sha1(pixels[i].tobytes()).hexdigest())
            digest_of = dict(zip(kept.tolist(), digests, strict=True))
            for split in SPLITS:
                idx = kept[splits[kept] == split]
                np.save(work / f"{split}_images.npy", np.asarray(pixels[idx]))
                np.save(work / f"{split}_labels.npy", labels[idx])
            summary = self._describe(labels, splits, kept, digest_of, skipped)
            (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            with (work / SKIPPED_FILE).open("w", newline="") as f:
                csv.writer(f).writerows([("file", "reason"), *skipped])
            del pixels
            (work / "all.npy").unlink()
            try:
                os.replace(work, target)
            except OSError:  # another process finished the same cache first: theirs is as good
                shutil.rmtree(work, ignore_errors=True)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def _describe(self, labels, splits, kept, digest_of, skipped) -> dict:
        """Images per class and split, the training set's imbalance, skipped files, cross-split leaks."""
        counts = {
            split: {
                self.class_names[k]: int(v)
                for k, v in sorted(Counter(labels[kept[splits[kept] == split]]).items())
            }
            for split in SPLITS
        }
        train = [counts["train"].get(c, 0) for c in self.class_names]
        where: dict[str, set[str]] = {}
        for i in kept.tolist():
            where.setdefault(digest_of[i], set()).add(splits[i])
        leaks = sorted(d for d, s in where.items() if len(s) > 1)
        return {
            "counts": counts,
            "imbalance": max(train) / min(train) if min(train) else float("inf"),
            "skipped": len(skipped),
            "leaks": leaks,  # sha1 of the decoded pixels of images found in two or more splits
        }

    def _open(self) -> Path:
        """The decoded cache (the folder decoded first if it has none), its summary read once."""
        folder = self._cache_folder()
        if not (folder / "summary.json").is_file():
            self._decode(folder)
        if not self.summary:
            self.summary = json.loads((folder / "summary.json").read_text())
            for split, per_class in self.summary["counts"].items():
                if not sum(per_class.values()):
                    raise FolderError(
                        f"{self.root}: the {split} split holds no images; add images or a {split}/ folder"
                    )
        return folder

    def _load(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        split = "test" if name == IID else name
        if split not in SPLITS and name in self.catalog_set_names():
            if name not in self._sets:
                data = self.pixel_set(name)
                self._sets[name] = (data["images"], data["labels"])
            return self._sets[name]
        if split not in SPLITS:
            raise KeyError(f"unknown set {name!r}; choose from train, val, test, {IID}")
        if split not in self._sets:
            folder = self._open()
            self._sets[split] = (
                np.load(folder / f"{split}_images.npy", mmap_mode="r"),
                np.load(folder / f"{split}_labels.npy"),
            )
        return self._sets[split]

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self._load(name)

    def data_metrics(self) -> dict:
        """For metrics.json: images per split and class, the imbalance, skipped files, leaked images."""
        self._load("train")
        s = self.summary
        out = {f"data/{split}/{c}": n for split, per in s["counts"].items() for c, n in per.items()}
        return {
            **out,
            "data/imbalance": s["imbalance"],
            "data/skipped": s["skipped"],
            "data/leaks": len(s["leaks"]),
        }

    def prepare_data(self) -> None:
        folder = self._open()
        s = self.summary
        sizes = ", ".join(f"{k} {sum(v.values())}" for k, v in s["counts"].items())
        log.info(
            "data: %s, %d classes (%s); %s images",
            self.root,
            self.num_classes,
            ", ".join(self.class_names),
            sizes,
        )
        if s["skipped"]:
            log.warning(
                "data: %d unreadable images skipped, listed in %s", s["skipped"], folder / SKIPPED_FILE
            )
        if s["leaks"]:
            log.warning(
                "data: %d images appear in two splits (a leak; by pixel hash: %s)",
                len(s["leaks"]),
                ", ".join(s["leaks"][:5]),
            )
        self._load("train")
        self._load("test")
        # made once into the cache, here: under DDP only the first process does it
        self.make_sets(self.catalog_set_names(), "data: shift catalog")
