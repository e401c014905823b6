"""`ShapesDataModule`: i.i.d. train/val/test splits and the o.o.d. catalog, rendered once and cached."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from shapeshift.config.schema import DataConfig
from shapeshift.data import IID, backgrounds, shifts
from shapeshift.data.augment import Augmentation
from shapeshift.data.base import ArrayDataModule
from shapeshift.data.cache import cached
from shapeshift.data.corruptions import corrupt_set, is_image_level
from shapeshift.data.render import CLASSES, render, sample_params
from shapeshift.runs.metric_keys import MIX

log = logging.getLogger(__name__)

SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULTS = DataConfig()  # the schema's defaults are this data set's: written once, there


class ShapesDataModule(ArrayDataModule):
    # A flip keeps a star a star and a moon a moon, and moves every shape into the other class's quadrants
    # (render.TRAIN_QUADRANTS): the label-free test of a quadrant reader.
    invariances = ("hflip", "vflip")

    def __init__(
        self,
        image_size: int = DEFAULTS.image_size,
        n_train_per_class: int = DEFAULTS.n_train_per_class,
        n_val_per_class: int = DEFAULTS.n_val_per_class,
        n_test_per_class: int = DEFAULTS.n_test_per_class,
        seed: int = DEFAULTS.seed,
        batch_size: int = DEFAULTS.batch_size,
        eval_batch_size: int = DEFAULTS.eval_batch_size,
        num_workers: int = DEFAULTS.num_workers,
        cache_dir: str | None = None,
        shift: Mapping | None = None,
        train_transform: Augmentation | None = None,
        train_seed: int = 0,
        **_: object,
    ):
        super().__init__()
        self.image_size = image_size
        self.sizes = {"train": n_train_per_class, "val": n_val_per_class, "test": n_test_per_class}
        self.seed, self.batch_size, self.eval_batch_size = seed, batch_size, eval_batch_size
        self.num_workers, self.cache_dir = num_workers, cache_dir
        self.use_catalog(shift, renders=True)
        self.train_transform, self.train_seed = train_transform, train_seed
        self.class_names, self.num_classes, self.channels = CLASSES, len(CLASSES), 3  # RGB
        self._sets: dict[str, dict[str, np.ndarray]] = {}

    # -- the sets ---------------------------------------------------------------------------------------
    @property
    def test_set_names(self) -> list[str]:
        return [IID, *self.catalog_set_names()]

    def test_identity(self) -> dict:
        return self._split_spec("test")

    def _split_spec(self, split: str) -> dict:
        return {
            "kind": "split",
            "split": split,
            "image_size": self.image_size,
            "n_per_class": self.sizes[split],
            "seed": self.seed,
        }

    def _params(self, split: str):
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, SPLITS[split]]))
        return sample_params(self.sizes[split], self.image_size, rng)

    def _render_split(self, split: str) -> dict[str, np.ndarray]:
        def build():
            params = self._params(split)
            images, _ = render(params, self.image_size)
            return {"images": images, "labels": params.label}

        return cached(self.cache_dir, split, self._split_spec(split), build)

    def _ood_base(self, n: int):
        """The first `n` test shapes of each class: the shapes every o.o.d. set redraws."""
        params = self._params("test")
        keep = np.concatenate([np.flatnonzero(params.label == c)[:n] for c in range(self.num_classes)])
        return params.take(np.sort(keep))

    def _photo_spec(self) -> dict:
        folder = self.shift.get("photo_dir")
        return {"photo_dir": folder, "photos": backgrounds.photo_names("eval", folder)}

    def _render_shift(self, name: str, ops_per_image, n_per_class: int) -> dict[str, np.ndarray]:
        """`ops_per_image`: one severity's ops for the whole set, or (for `mix`) a list of (set, ops)."""
        base = self._ood_base(n_per_class)
        spec = {
            "kind": "shift",
            "name": name,
            "ops": ops_per_image,
            "base": self._split_spec("test"),
            "n_per_class": len(base) // self.num_classes,
            **self._photo_spec(),
        }

        def build():
            rng = np.random.default_rng(shifts.set_seed(self.seed, name))
            photos = backgrounds.load_photos("eval", self.shift.get("photo_dir"))
            if name != MIX:
                out = shifts.apply(base, ops_per_image, self.image_size, rng, photos)
                return {"images": out.images, "labels": out.params.label}
            # The seed's "dataset 2": each image its own random family and severity.
            choice = rng.integers(len(ops_per_image), size=len(base))
            images = np.empty((len(base), self.image_size, self.image_size, 3), np.uint8)
            for j, (_, ops) in enumerate(ops_per_image):
                idx = np.flatnonzero(choice == j)
                if len(idx) and is_image_level(ops):  # pixel operations: on the rendered test images
                    plain, _ = render(base.take(idx), self.image_size)
                    images[idx] = corrupt_set(plain, ops, self.seed, MIX)
                elif len(idx):
                    images[idx] = shifts.apply(base.take(idx), ops, self.image_size, rng, photos).images
            return {"images": images, "labels": base.label, "set": choice}

        return cached(self.cache_dir, name, spec, build)

    def selection_arrays(self, ops_list: list) -> tuple[np.ndarray, np.ndarray]:
        """The validation shapes under each of `ops_list` (shifts held out of the report), concatenated:
        what quality control chooses its gate on. Never a test shape, never a catalog set."""
        if not ops_list:
            return super().selection_arrays(ops_list)
        spec = {"kind": "selection", "ops": list(ops_list), "base": self._split_spec("val")}

        def build():
            rng = np.random.default_rng(shifts.set_seed(self.seed, "selection"))
            params, sets = self._params("val"), []
            for ops in ops_list:
                sets.append(shifts.apply(params, ops, self.image_size, rng).images)
            return {"images": np.concatenate(sets), "labels": np.tile(params.label, len(sets))}

        data = cached(self.cache_dir, "selection", spec, build)
        return data["images"], data["labels"]

    def _load(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._sets:
            if name in SPLITS:
                self._sets[name] = self._render_split(name)
            elif name == IID:
                self._sets[name] = self._load("test")
            elif name == MIX:
                mix = [
                    (f"{f}/s{k}", shifts.severity_ops(self.families, f, k))
                    for f in self.families
                    for k in shifts.SEVERITIES
                ]
                self._sets[name] = self._render_shift(MIX, mix, int(self.shift.get("mix_n_per_class", 0)))
            else:
                family, sev = name.rsplit("/s", 1)
                ops = shifts.severity_ops(self.families, family, int(sev))
                if is_image_level(ops):
                    self._sets[name] = self.pixel_set(name)
                else:
                    n = int(self.shift.get("n_per_class", 100))
                    self._sets[name] = self._render_shift(name, ops, n)
        return self._sets[name]

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Images (N, S, S, 3) uint8 and labels of a split or an evaluation set."""
        data = self._load(name)
        return data["images"], data["labels"]

    # -- Lightning hooks --------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Renders into the cache only (no state is kept: Lightning may call this in another process).
        for name in ["train", "val", "test"]:
            self._load(name)
        self.make_sets(self.catalog_set_names(), "data: shift catalog")
        self._sets.clear()
