"""`data=folder`: a labelled image folder the tests write (odd sizes, every mode, a corrupt file, a leak, an
empty class), decoded once into a cache, split, reported, and trained on from the command line."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shapeshift.config.errors import ConfigError
from shapeshift.data import folder as folder_data
from shapeshift.data.folder import FolderDataModule
from shapeshift.data.images import read_image
from tests.helpers import run_cli

CLASSES = ("cat", "dog")  # not star/moon: the names must come from the folders


def picture(label: int, i: int, size=(37, 53)) -> np.ndarray:
    """A class you can tell by colour (cat: red, dog: blue), with per-image noise and an odd size."""
    rng = np.random.default_rng(i * 2 + label)
    img = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
    img[..., 0 if label == 0 else 2] += 180
    return img


def write_folder(root: Path, n: int = 30, modes: bool = True, start: int = 0) -> Path:
    """`root/<class>/*`: PNG, JPEG and WebP in RGB, grey, RGBA and palette modes, plus a note and a broken
    file."""
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = Image.fromarray(picture(label, start + i))
            kind = i % 5 if modes else 0
            if kind == 0:
                img.save(root / name / f"{i:03d}.png")
            elif kind == 1:
                img.save(root / name / f"{i:03d}.jpg", quality=95)
            elif kind == 2:
                img.convert("RGBA").save(root / name / f"{i:03d}_rgba.png")
            elif kind == 3:
                img.convert("P", palette=Image.Palette.ADAPTIVE).save(root / name / f"{i:03d}_p.png")
            else:
                img.save(root / name / f"{i:03d}.webp", lossless=True)
    (root / CLASSES[0] / "notes.txt").write_text("not an image: ignored, not skipped")
    (root / CLASSES[1] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def module(root: Path, cache: Path, **kw) -> FolderDataModule:
    return FolderDataModule(
        root=str(root), image_size=32, cache_dir=str(cache), **{"max_skipped": 0.05, **kw}
    )


def test_a_folder_is_split_per_class_decoded_once_and_reported(tmp_path):
    root = write_folder(tmp_path / "images")
    dm = module(root, tmp_path / "cache")
    assert dm.class_names == CLASSES and dm.num_classes == 2
    dm.prepare_data()
    sizes = {s: len(dm.arrays(s)[1]) for s in ("train", "val", "test")}
    assert sizes == {"train": 42, "val": 6, "test": 12}  # 30 readable a class: 10% and 20% of each
    for split in ("train", "val", "test"):
        images, labels = dm.arrays(split)
        assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8
        assert set(np.unique(labels)) == {0, 1}  # stratified: both classes in every split
        # cat is red, dog is blue, whatever mode the file was saved in
        assert np.all((images[..., 0].mean((1, 2)) > images[..., 2].mean((1, 2))) == (labels == 0))
    m = dm.data_metrics()
    assert m["data/train/cat"] + m["data/val/cat"] + m["data/test/cat"] == 30
    assert m["data/train/dog"] + m["data/val/dog"] + m["data/test/dog"] == 30  # the broken file skipped
    assert (m["data/skipped"], m["data/leaks"]) == (1, 0)
    assert m["data/imbalance"] == pytest.approx(21 / 21)
    (cache,) = (tmp_path / "cache").iterdir()
    with (cache / "skipped.csv").open() as f:
        assert [row[0] for row in csv.reader(f)] == ["file", "dog/broken.png"]
    # Memory-mapped from the cache, not held in memory.
    assert isinstance(dm.arrays("train")[0], np.memmap)


def test_an_unchanged_folder_costs_no_decode_and_a_changed_one_rebuilds(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "images", n=10, modes=False)
    first = module(root, tmp_path / "cache")
    first.prepare_data()
    before = first.arrays("train")[0].copy()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_data, "read_image", no_decoding)
    again = module(root, tmp_path / "cache")
    again.prepare_data()
    assert np.array_equal(again.arrays("train")[0], before)
    monkeypatch.undo()
    Image.fromarray(picture(0, 99)).save(root / "cat" / "new.png")
    changed = module(root, tmp_path / "cache")
    changed.prepare_data()
    assert (
        changed.data_metrics()["data/train/cat"]
        + changed.data_metrics()["data/val/cat"]
        + changed.data_metrics()["data/test/cat"]
        == 11
    )
    assert len(list((tmp_path / "cache").iterdir())) == 2  # a second cache: the folder's content changed


def test_classes_txt_sets_the_label_order(tmp_path):
    root = write_folder(tmp_path / "images", n=6, modes=False)
    sorted_order = module(root, tmp_path / "cache", max_skipped=0.1)
    (root / "classes.txt").write_text("dog\ncat\n")
    listed = module(root, tmp_path / "cache", max_skipped=0.1)
    assert (sorted_order.class_names, listed.class_names) == (("cat", "dog"), ("dog", "cat"))

    def images_of(dm, label):
        return sorted(
            x.tobytes()
            for s in ("train", "val", "test")
            for x, y in zip(*dm.arrays(s), strict=True)
            if y == label
        )

    assert images_of(sorted_order, 0) == images_of(listed, 1)  # the cats, now label 1


def test_the_same_seed_gives_the_same_split_and_another_seed_another(tmp_path):
    root = write_folder(tmp_path / "images", n=20, modes=False)
    a, b, c = (module(root, tmp_path / f"cache{k}", seed=s) for k, s in ((0, 0), (1, 0), (2, 1)))
    for dm in (a, b, c):
        dm.prepare_data()
    assert np.array_equal(a.arrays("test")[0], b.arrays("test")[0])
    assert not np.array_equal(a.arrays("test")[0], c.arrays("test")[0])


def test_split_folders_are_used_and_an_image_in_two_of_them_is_a_leak(tmp_path):
    root = tmp_path / "images"
    for split, n, start in (("train", 12, 0), ("test", 4, 100)):
        write_folder(root / split, n=n, modes=False, start=start)
        (root / split / "cat" / "notes.txt").unlink()
        (root / split / "dog" / "broken.png").unlink()
    shutil.copy(root / "train" / "cat" / "000.png", root / "test" / "cat" / "copy.png")
    dm = module(root, tmp_path / "cache")
    dm.prepare_data()
    m = dm.data_metrics()
    assert (m["data/test/cat"], m["data/test/dog"]) == (5, 4)  # the test folder as it is; val from train
    assert m["data/val/cat"] + m["data/train/cat"] == 12
    assert m["data/leaks"] == 1 and m["data/skipped"] == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: None, "is not a folder"),
        (lambda r: (r / "cat").mkdir(parents=True), "one class"),
        (lambda r: [(r / c).mkdir(parents=True) for c in CLASSES], "has no images"),
        (
            lambda r: [
                write_folder(r / "train", n=3, modes=False),
                (r / "val" / "cat").mkdir(parents=True),
            ],
            "every split needs the same class folders",
        ),
        (
            lambda r: [write_folder(r, n=3, modes=False), (r / "classes.txt").write_text("dog\ncat\nbird\n")],
            r"lists \['dog', 'cat', 'bird'\], the class folders are \['cat', 'dog'\]",
        ),
    ],
)
def test_a_folder_that_cannot_be_a_data_set_is_one_line(tmp_path, make, message):
    root = tmp_path / "images"
    make(root)
    with pytest.raises(ConfigError, match=message) as err:
        module(root, tmp_path / "cache").prepare_data()
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_too_many_unreadable_images_stop_the_run_and_leave_no_cache(tmp_path):
    root = write_folder(tmp_path / "images", n=4, modes=False)  # 1 broken of 8: above 5%
    with pytest.raises(ConfigError, match="cannot be read"):
        module(root, tmp_path / "cache").prepare_data()
    assert not any((tmp_path / "cache").iterdir())


def test_sixteen_bit_exif_rotated_and_transparent_images_decode_as_they_look(tmp_path):
    grey16 = np.full((20, 30), 32768, np.uint16)  # half of 16-bit white: mid grey, not clipped to white
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    assert abs(int(read_image(tmp_path / "grey16.png", 8, 1).mean()) - 128) <= 1
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = 255  # left half white, as stored
    img = Image.fromarray(wide)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    img.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "rotated.jpg", 16, 3, resize="stretch")
    assert upright[:8].mean() > 200 > 50 > upright[8:].mean()  # displayed: the white half on top
    clear = np.zeros((10, 10, 4), np.uint8)
    Image.fromarray(clear, "RGBA").save(tmp_path / "clear.png")
    assert read_image(tmp_path / "clear.png", 4, 3).min() == 255  # white behind transparency
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[:10] = 255  # the top quarter: cut away by the centre crop, squashed in by stretch
    Image.fromarray(tall).save(tmp_path / "tall.png")
    assert read_image(tmp_path / "tall.png", 20, 3, resize="crop").max() == 0
    assert read_image(tmp_path / "tall.png", 20, 3, resize="stretch")[:3].min() >= 250


def test_a_folder_run_from_the_command_line_learns_and_names_its_classes(tmp_path):
    root = write_folder(tmp_path / "images", n=40, modes=False)
    (root / "dog" / "broken.png").unlink()
    run_dir = tmp_path / "run"
    args = [
        "data=folder",
        f"data.root={root}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.image_size=32",
        "data.batch_size=16",
        "debug=smoke",
        "trainer.max_epochs=2",
        "arch=cnn",
        f"hydra.run.dir={run_dir}",
    ]
    done = run_cli("train", args)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/iid/acc"] >= 0.9  # red against blue: learned in two short epochs
    assert metrics["data/train/cat"] + metrics["data/val/cat"] + metrics["data/test/cat"] == 40
    assert not any(k.startswith("test/position") for k in metrics)  # no shape to move: the i.i.d. set only
    from shapeshift.models.classifier import Classifier

    model = Classifier.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")
    assert model.class_names == CLASSES
    # Evaluated again from its saved config: the same weights on the same decoded test split.
    evaluated = run_cli("evaluate", [f"run={run_dir}", "accelerator=cpu"])
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    again_metrics = json.loads((run_dir / "evaluation.json").read_text())
    assert again_metrics["test/iid/acc"] == metrics["test/iid/acc"]
    # The same command again: finished, skipped, nothing decoded.
    again = run_cli("train", args)
    assert again.returncode == 0 and "is finished" in again.stdout + again.stderr
    assert os.listdir(tmp_path / "cache")  # the one decoded cache
