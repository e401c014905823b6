"""The preview labels images with the data module's own classes, whatever the data set."""

from types import SimpleNamespace

import numpy as np

from shapeshift.preview import draw, mosaic


def fake_datamodule(class_names: tuple[str, ...]):
    labels = np.arange(20) % len(class_names)
    images = np.zeros((20, 8, 8, 3), np.uint8)
    return SimpleNamespace(
        class_names=class_names, test_set_names=["iid"], arrays=lambda name: (images, labels)
    )


def test_digits_are_labelled_as_digits(tmp_path):
    dm = fake_datamodule(tuple(str(d) for d in range(10)))
    grid, labels = mosaic(dm, ["iid"], examples=8)
    assert labels == ["0 1 2 3 4 5 6 7"]
    assert grid.shape == (10, 8 * 10, 3)  # 8 images, each with a 1-px frame
    assert draw(dm, tmp_path / "p.png", examples=8).is_file()


def test_stars_and_moons_alternate():
    _, labels = mosaic(fake_datamodule(("star", "moon")), ["iid"], examples=4)
    assert labels == ["s m s m"]
