"""`python -m shapeshift.export`: the star/moon data written as a PNG folder is the same data set to
`data=folder`, pixel for pixel, and a run on it equals a run on the star/moon module once the two things a
folder cannot keep are given to that module too: the order across classes and the shape renders."""

import hashlib

import numpy as np
import pytest

from shapeshift.data import IID
from shapeshift.data.datamodule import ShapesDataModule
from shapeshift.data.folder import FolderDataModule
from shapeshift.train import train
from tests.helpers import run_cli, without_measurements

SIZES = [
    "data.image_size=32",
    "data.n_train_per_class=32",
    "data.n_val_per_class=16",
    "data.n_test_per_class=16",
]


class ClassMajorShapes(ShapesDataModule):
    """The star/moon data as a folder holds it: each split stably ordered by class (a folder lists a
    class's files together, in the export's index order), and no shape renders to choose the QC gate on
    (a folder has no shape to move)."""

    def arrays(self, name):
        images, labels = super().arrays(name)
        if name in ("train", "val", "test", IID):  # iid: the test split as the evaluation set
            order = np.argsort(labels, kind="stable")
            return np.asarray(images)[order], labels[order]
        return images, labels

    def selection_arrays(self, ops_list):
        return super(ShapesDataModule, self).selection_arrays(ops_list)


def digests(images, labels) -> list[tuple[str, int]]:
    return sorted(
        (hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest(), int(y))
        for x, y in zip(images, labels, strict=True)
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "shapes"
    done = run_cli("export", ["data=shapes", f"out={out}", *SIZES, "data.cache_dir=" + str(out.parent / "c")])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote train 64, val 32, test 32 images" in done.stdout
    return out


def modules(exported, tmp_path, shift):
    kw = {"image_size": 32, "cache_dir": str(tmp_path), "shift": shift}
    shapes = ShapesDataModule(n_train_per_class=32, n_val_per_class=16, n_test_per_class=16, **kw)
    folder = FolderDataModule(root=str(exported), **kw)
    return shapes, folder


def test_the_folder_holds_the_same_pixels_and_labels_in_class_order(exported, tmp_path):
    shapes, folder = modules(exported, tmp_path, None)
    assert sorted(p.name for p in exported.iterdir()) == ["classes.txt", "test", "train", "val"]
    assert folder.class_names == shapes.class_names  # the folder names are the class names
    for split in ("train", "val", "test"):
        (a, y), (b, z) = shapes.arrays(split), folder.arrays(split)
        order = np.argsort(y, kind="stable")
        assert np.array_equal(np.asarray(a)[order], np.asarray(b)) and np.array_equal(y[order], z), split
    assert folder.data_metrics()["data/leaks"] == 0 and folder.data_metrics()["data/skipped"] == 0


def test_the_corruption_catalog_is_the_same_on_both(exported, tmp_path):
    from omegaconf import OmegaConf

    from tests.helpers import CONF

    shift = OmegaConf.to_container(OmegaConf.load(CONF / "shift" / "corruptions.yaml"))
    shift["n_per_class"] = 8
    shapes, folder = modules(exported, tmp_path, shift)
    assert shapes.catalog_set_names() == folder.catalog_set_names()
    assert len(folder.catalog_set_names()) == 24 * 5
    for name in folder.catalog_set_names()[::7]:  # every 7th set: all families, all severities
        assert digests(*shapes.arrays(name)) == digests(*folder.arrays(name)), name


def test_a_folder_run_equals_the_star_moon_run_given_the_folders_order(exported, cfg_factory, tmp_path):
    """Trained and evaluated on `shift=corruptions`: every metric equal, the measurements and the data
    set's own description (data/: counts per class, skips, leaks) aside. No `mix` set (the corruption
    catalog has none; the smoke preset adds one): the star/moon module renders its mix from new shapes."""
    common = [
        "debug=smoke",
        "shift=corruptions",
        "shift.n_per_class=8",
        "shift.mix_n_per_class=0",
        *SIZES,
        "trainer.max_epochs=2",
    ]
    folder = train(cfg_factory(*common, "data=folder", f"data.root={exported}", output_dir=tmp_path / "f"))
    ordered = train(
        cfg_factory(*common, f"data._target_={__name__}.ClassMajorShapes", output_dir=tmp_path / "s")
    )
    keep = {k: v for k, v in without_measurements(folder).items() if not k.startswith("data/")}
    other = {k: v for k, v in without_measurements(ordered).items() if not k.startswith("data/")}
    assert sum(k.startswith("test/gaussian_noise/s") for k in keep) >= 5
    different = {
        k: (keep.get(k), other.get(k)) for k in keep.keys() | other.keys() if keep.get(k) != other.get(k)
    }
    # The data set's name (`folder` against `shapes`) and the config's fingerprint, which holds it; and
    # the model's consistency under flips, which the star/moon data declares label-preserving and a folder
    # does not (qc.invariances: auto).
    assert different.keys() <= {"data", "fingerprint", "qc/invariance"}, different
    assert keep["qc/invariance"] is None and 0 <= other["qc/invariance"] <= 1  # NaN is written as null
