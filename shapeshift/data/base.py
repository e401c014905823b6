"""What every data module here shares: uint8 arrays in, seeded shuffling and augmentation, one evaluation
dataset of (image, label, set index), and scaling to [-1, 1] on the device.

A subclass provides `arrays(name)` for `train`, `val` and each name in `test_set_names`; says what its
images are (`class_names`, `channels`: the audit and W&B read them, so any data set can be audited); and
sets `train_transform`, `train_seed`, `batch_size`, `eval_batch_size` and `num_workers`.

The pixel-level shift catalog (`shift=corruptions`) is shared here: `use_catalog` keeps the families a
data set can evaluate, and `pixel_set` corrupts the first test images of each class, cached on disk at the
model's input size and keyed by the test images' identity (`test_identity`).
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import sys
from collections.abc import Mapping

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from shapeshift.config.errors import ConfigError
from shapeshift.console.progress import track
from shapeshift.data import corruptions, shifts
from shapeshift.data.augment import Augmentation
from shapeshift.data.batch_augment import BatchTransform, uniforms
from shapeshift.data.cache import cached
from shapeshift.runs.metric_keys import MIX, SEVERITIES, shifted_set

MIX_CHOICE = "mix/choice"  # the stream that picks each image's set in a pixel `mix`

log = logging.getLogger(__name__)


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    if not images.flags.writeable:  # the read-only cache map: for grey images permute() copies nothing
        images = np.array(images)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(
        labels.astype(np.int64)
    )


def scale_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to the float range every model here is trained on, [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC arrays (as the data modules hold them) to a model's float NCHW input."""
    images = np.ascontiguousarray(images)
    if not images.flags.writeable:  # a read-only cache map; the float conversion copies anyway
        images = images.copy()
    return scale_uint8(torch.from_numpy(images).permute(0, 3, 1, 2))


def sample_generators(seed: int, epoch: int, index: int) -> tuple[np.random.Generator, random.Random]:
    """The random streams of one training sample in one epoch: a function of (seed, epoch, index) only."""
    seq = np.random.SeedSequence([seed, epoch, index])
    return np.random.Generator(np.random.PCG64(seq)), random.Random(int(seq.generate_state(1)[0]))


def first_per_class(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first `n` images of each class, in their original order."""
    keep = [np.flatnonzero(labels == c)[:n] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.empty(0, np.int64)


class AugmentedDataset(Dataset):
    """Per-sample Albumentations on uint8 HWC arrays; yields uint8 CHW tensors.

    Indexed by `(epoch, i)` (what `EpochShuffle` yields): each sample's augmentation is drawn from its own
    generators, seeded with (seed, epoch, i), so it is the same whichever data worker, process or rank
    draws it, and in whatever order. One stream per epoch would hand every worker a copy of the same
    stream (measured: with 2 workers, batch k of worker 0 equalled batch k of worker 1). Seeding costs
    ~12 us per sample against 74 us (basic) to 407 us (strong) for the augmentation itself.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Augmentation, seed: int = 0):
        self.images, self.labels, self.transform, self.seed = images, labels.astype(np.int64), transform, seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        self.transform.set_random_state(*sample_generators(self.seed, epoch, i))
        img = self.transform(image=self.images[i])["image"]
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1), int(self.labels[i])


def _whole(batch):
    """The collate function of a dataset whose `__getitems__` returns a whole batch: nothing left to do."""
    return batch


class BatchAugmentedDataset(AugmentedDataset):
    """For a `BatchTransform`: a batch of uint8 CHW images with each sample's parameters, fetched at once.

    The DataLoader hands `__getitems__` a batch's `(epoch, i)` keys: the images are gathered in one index
    and the parameters drawn in a few array operations (batch_augment.uniforms: a function of seed, epoch
    and index alone). The batch is transformed on the device, in `on_after_batch_transfer`.
    """

    def __getitems__(self, keys: list) -> dict[str, torch.Tensor]:
        epoch, index = np.array([k if isinstance(k, tuple) else (0, k) for k in keys], np.int64).T
        images = torch.from_numpy(np.ascontiguousarray(self.images[index]))
        params = self.transform.params(uniforms(self.seed, epoch, index, self.transform.n_uniforms))
        return {
            "image": images.permute(0, 3, 1, 2),
            "label": torch.from_numpy(self.labels[index]),
            "params": torch.from_numpy(params),
        }

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([key]).items()}

    collate = staticmethod(_whole)


class InMemoryDataset(TensorDataset):
    """Tensors in memory, fetched a batch at a time: one gather per tensor instead of one index per image
    and a stack. Loaded in the main process: a worker would only add a copy between processes (measured:
    the star/moon catalog tested 1.46x slower with 2 workers than without)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        return tuple(t[indices] for t in self.tensors)

    collate = staticmethod(_whole)


class EpochShuffle(Sampler):
    """A shuffle that depends only on (seed, epoch); for an `AugmentedDataset` it yields `(epoch, i)`, the
    key its augmentation is seeded with.

    Lightning calls `set_epoch` before every epoch, resumed runs included (under DDP through its
    `DistributedSamplerWrapper`, which shards what this yields), so a run restarted from its last
    checkpoint sees exactly the batches and augmentations an uninterrupted run would have seen.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        if isinstance(self.dataset, AugmentedDataset):  # BatchAugmentedDataset included
            return iter([(self.epoch, i) for i in order])
        return iter(order)


class _MakeSets(Dataset):
    """Item i makes set `names[i]` into the cache; what a data worker runs when sets are made in parallel.

    A one-line error (a `ConfigError`) comes back as a value and is raised again in the main process, as
    itself: the DataLoader would wrap it in a worker's traceback.
    """

    def __init__(self, datamodule: ArrayDataModule, names: list[str]):
        self.datamodule, self.names = datamodule, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        try:
            self.datamodule.arrays(self.names[i])
        except ConfigError as err:
            return err
        return i


def _can_fork() -> bool:
    # The workers inherit the data module (its test images, its catalog) instead of receiving it pickled;
    # fork is what DataLoader workers use on Linux. Elsewhere (macOS: fork is unsafe) the sets are made
    # one after another.
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


class ArrayDataModule(L.LightningDataModule):
    class_names: tuple[str, ...] = ()  # index = label
    channels: int = 3  # images are uint8 (N, H, W, channels)
    resize: str = "stretch"  # how other images (the audit's) are fitted to the size: shapeshift.data.images
    invariances: tuple[str, ...] = ()  # transforms that keep every image's class (qc/invariance.py)
    train_transform: Augmentation | None = None
    train_seed: int = 0
    batch_size: int = 128
    eval_batch_size: int = 500
    num_workers: int = 0

    @property
    def test_set_names(self) -> list[str]:
        raise NotImplementedError

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    # -- the shift catalog -------------------------------------------------------------------------------
    shift: dict = {}  # noqa: RUF012 (replaced per instance by use_catalog)
    families: dict = {}  # noqa: RUF012
    seed: int = 0
    cache_dir = None

    def use_catalog(self, shift: Mapping | None, renders: bool) -> None:
        """Keep the shift config's families this data can evaluate: all of them if it `renders` shapes,
        else those made of pixel operations only (the others are named once in the log)."""
        self.shift = dict(shift or {})
        families = {k: list(v) for k, v in (self.shift.get("families") or {}).items()}
        shifts.validate_catalog(families)
        if not renders:
            keep = shifts.image_level_families(families)
            dropped = [f for f in families if f not in keep]
            if dropped and keep:
                log.warning(
                    "data: %s re-render a star/moon shape; this data set evaluates %d pixel families only",
                    ", ".join(dropped),
                    len(keep),
                )
            families = {f: families[f] for f in keep}
        self.families = families

    def catalog_set_names(self) -> list[str]:
        names = [shifted_set(f, k) for f in self.families for k in SEVERITIES]
        if self.families and self.shift.get("mix_n_per_class", 0) > 0:
            names.append(MIX)
        return names

    def test_identity(self) -> dict:
        """What identifies the test images, for the catalog's cache key."""
        raise NotImplementedError

    def catalog_cache_dir(self):
        return self.cache_dir

    def pixel_set(self, name: str) -> dict[str, np.ndarray]:
        """One catalog set (or `mix`) made by corrupting the test images: the first `shift.n_per_class`
        of each class, in test order, each from its own (seed, set, pixels) stream."""
        n = int(self.shift.get("mix_n_per_class" if name == MIX else "n_per_class", 100))
        if name == MIX:
            ops_of = [
                (shifted_set(f, k), dict(self.families[f][k - 1]))
                for f in shifts.image_level_families(self.families)
                for k in SEVERITIES
            ]
        else:
            family, sev = name.rsplit("/s", 1)
            ops_of = dict(shifts.severity_ops(self.families, family, int(sev)))
        spec = {
            "kind": "pixels",
            "version": 2,
            "name": name,
            "ops": ops_of,
            "n_per_class": n,
            "test": self.test_identity(),
        }

        def build():
            images, labels = self.arrays("test")
            keep = first_per_class(labels, n)
            base, labels = np.asarray(images[keep]), labels[keep]
            if name != MIX:
                return {"images": corruptions.corrupt_set(base, ops_of, self.seed, name), "labels": labels}
            # Each image's set from its own stream, as its corruption: the same mix in any test order.
            choice = np.array(
                [corruptions.image_seed(self.seed, MIX_CHOICE, x).integers(len(ops_of)) for x in base],
                np.int64,
            )
            out = np.empty_like(base)
            for j, (_, ops) in enumerate(ops_of):
                idx = np.flatnonzero(choice == j)
                out[idx] = corruptions.corrupt_set(base[idx], ops, self.seed, MIX)
            return {"images": out, "labels": labels, "set": choice}

        return cached(self.catalog_cache_dir(), name, spec, build)

    def make_sets(self, names: list[str], description: str) -> None:
        """Make `names` into the cache (rendered or corrupted, whichever they are), with a progress bar.

        With `data.num_workers` > 0 and a cache to hand them over, the sets are made in that many data
        worker processes, a set each at a time. Each set is drawn from its own seed (a star/moon set from
        (seed, set name), a corrupted one from (seed, set name, each image's pixels)), so the files are
        the same bytes whoever makes them, in whatever order. Call it after the images the sets are made
        from are loaded, so the workers inherit them.
        """
        workers = min(self.num_workers, len(names))
        if workers == 0 or self.catalog_cache_dir() is None or not _can_fork():
            for name in track(names, description):
                self.arrays(name)
            return
        loader = DataLoader(
            _MakeSets(self, names), batch_size=None, num_workers=workers, multiprocessing_context="fork"
        )
        for made in track(loader, description, total=len(names)):
            if isinstance(made, ConfigError):
                raise made

    def data_metrics(self) -> dict:
        """What metrics.json records about the data set itself (a folder's counts, skips, leaks)."""
        return {}

    def selection_arrays(self, ops_list: list) -> tuple[np.ndarray, np.ndarray]:
        """Validation images under held-out shifts, for choosing the QC gate; data with no shape to move
        or occlude has none, and the gate is chosen on the i.i.d. validation images alone."""
        return np.empty((0, 0, 0, 0), np.uint8), np.empty(0, np.int64)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = self._dataset("train", self.train_transform)
            self.val_set = self._dataset("val")
        if stage in ("test", None):
            self.test_set = self.evaluation_dataset(self.test_set_names)

    def _dataset(self, name: str, transform: Augmentation | None = None) -> Dataset:
        images, labels = self.arrays(name)
        if isinstance(transform, BatchTransform):
            return BatchAugmentedDataset(images, labels, transform, self.train_seed)
        if transform is not None:
            return AugmentedDataset(images, labels, transform, self.train_seed)
        return InMemoryDataset(*_to_tensors(images, labels))

    def evaluation_dataset(self, names: list[str]) -> InMemoryDataset:
        """All evaluation sets in one dataset of (image, label, set index): one pass, full batches."""
        parts = [self.arrays(n) for n in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        index = np.concatenate([np.full(len(p[1]), i, np.int64) for i, p in enumerate(parts)])
        return InMemoryDataset(*_to_tensors(images, labels), torch.from_numpy(index))

    def _loader(self, dataset: Dataset, batch_size: int, sampler: Sampler | None = None) -> DataLoader:
        workers = 0 if isinstance(dataset, InMemoryDataset) else self.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=getattr(dataset, "collate", None),  # None: the default
        )

    def device_batch_size(self) -> int:
        """`batch_size` is the batch an optimizer step sees: under DDP each of the world's processes loads
        its share, so a run on N devices steps with the same batch and learning rate as on one."""
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise ConfigError(
                f"data.batch_size={self.batch_size} must be a multiple of the {world} processes "
                "training together (it is the batch of one optimizer step, split among them)"
            )
        return self.batch_size // world

    def train_dataloader(self) -> DataLoader:
        return self._loader(
            self.train_set, self.device_batch_size(), EpochShuffle(self.train_set, self.train_seed)
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # uint8 travels to the device (4x less to copy); scale to [-1, 1] there, once per batch.
        if isinstance(batch, dict):  # a batch augmented here: each sample's parameters came with it
            x = self.train_transform(batch["image"], batch["params"])
            return [scale_uint8(x), batch["label"]]
        x, *rest = batch
        return [scale_uint8(x), *rest]
