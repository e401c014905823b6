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


def test_a_severity_sheet_of_a_folder_from_the_command_line(tmp_path):
    """`preview data=folder shift=corruptions severities=[1,3,5]`: one image, a row per family; the sheet's
    i.i.d. image is the test image every set corrupts (the same first image of class 0)."""
    from PIL import Image

    from tests.helpers import run_cli

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
                tmp_path / "images" / cls / f"{i}.png"
            )
    out = tmp_path / "sheet.png"
    proc = run_cli(
        "preview",
        [
            "data=folder",
            f"data.root={tmp_path / 'images'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.image_size=32",
            "shift=corruptions",
            "shift.n_per_class=1",
            "severities=[1,5]",
            f"out={out}",
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape[0] > 4 * sheet.shape[1]  # 24 rows (a family each) of 3 pictures
    again = run_cli("preview", [*proc.args[3:-2], "severities=[1,3,5]", f"out={tmp_path / 'b.png'}"])
    assert again.returncode == 0, again.stderr[-2000:]
    wider = np.asarray(Image.open(tmp_path / "b.png").convert("RGB"))
    assert wider.shape[1] > sheet.shape[1] and abs(wider.shape[0] - sheet.shape[0]) < 10  # a column each
