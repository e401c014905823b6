"""`data=mnist`: IDX files the test writes itself are read exactly; a folder without them fails in a line."""

import gzip
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from shapeshift.config.errors import ConfigError
from shapeshift.config.validation import validate
from shapeshift.data.augment import build_augmentation
from shapeshift.data.mnist import FILES, MnistDataModule, find_file, read_idx

N_TRAIN_PER_DIGIT, N_TEST_PER_DIGIT = 30, 10
ALL_FILES = [name for pair in FILES.values() for name in pair]


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """The IDX format by hand: 0, 0, type 0x08 (ubyte), ndim, big-endian int32 dims, then the bytes."""
    array = np.ascontiguousarray(array, np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def drawn_digits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White digits on black, as MNIST, each with its own noise so that no two images are equal."""
    images = np.zeros((len(labels), 28, 28), np.uint8)
    for img, label in zip(images, labels, strict=True):
        cv2.putText(
            img,
            str(int(label)),
            (int(rng.integers(3, 9)), int(rng.integers(20, 26))),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.8,
            255,
            2,
        )
        img[:] = np.maximum(img, rng.integers(0, 40, img.shape, dtype=np.uint8))
    return images


def make_split(n_per_digit: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.repeat(np.arange(10), n_per_digit)).astype(np.uint8)
    return drawn_digits(labels, rng), labels


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """A small MNIST: 300 training and 100 test digits; the training files gzipped, the test files not."""
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    train, test = make_split(N_TRAIN_PER_DIGIT, rng), make_split(N_TEST_PER_DIGIT, rng)
    write_idx(root / "train-images-idx3-ubyte.gz", train[0], gz=True)
    write_idx(root / "train-labels-idx1-ubyte.gz", train[1], gz=True)
    write_idx(root / "t10k-images-idx3-ubyte", test[0])
    write_idx(root / "t10k-labels-idx1-ubyte", test[1])
    return root, train, test


def make(root, **kw) -> MnistDataModule:
    args = dict(
        root=str(root),
        n_train_per_class=20,
        n_val_per_class=5,
        n_test_per_class=8,
        batch_size=16,
        eval_batch_size=64,
    )
    args.update(kw)
    return MnistDataModule(**args)


def rows(images: np.ndarray) -> list[bytes]:
    return [img.tobytes() for img in images]


def test_idx_files_are_read_exactly(mnist, tmp_path):
    root, (train_x, train_y), (test_x, test_y) = mnist
    assert np.array_equal(read_idx(root / "train-images-idx3-ubyte.gz"), train_x)
    assert np.array_equal(read_idx(root / "train-labels-idx1-ubyte.gz"), train_y)
    assert np.array_equal(read_idx(root / "t10k-images-idx3-ubyte"), test_x)
    # Mirrors' dotted names and torchvision's MNIST/raw folder are found too.
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-labels.idx1-ubyte", test_y)
    assert find_file(tmp_path, "t10k-labels-idx1-ubyte") == raw / "t10k-labels.idx1-ubyte"
    assert np.array_equal(read_idx(raw / "t10k-labels.idx1-ubyte"), test_y)


def test_splits_are_exact_disjoint_and_seeded(mnist):
    root, (train_x, train_y), (test_x, test_y) = mnist
    dm = make(root)
    dm.prepare_data()
    tr_x, tr_y = dm.arrays("train")
    va_x, va_y = dm.arrays("val")
    te_x, te_y = dm.arrays("test")
    assert tr_x.shape == (200, 28, 28, 1) and tr_x.dtype == np.uint8 and tr_y.dtype == np.int64
    assert np.bincount(tr_y).tolist() == [20] * 10 and np.bincount(va_y).tolist() == [5] * 10
    # Every train and validation image is a training-file image, bit for bit, with its own label.
    original = dict(zip(rows(train_x), train_y.tolist(), strict=True))
    for x, y in ((tr_x, tr_y), (va_x, va_y)):
        assert [original[r] for r in rows(x[..., 0])] == y.tolist()
    assert not set(rows(tr_x)) & set(rows(va_x))
    # The test set: the first 8 of each digit in file order, exactly.
    keep = np.sort(np.concatenate([np.flatnonzero(test_y == d)[:8] for d in range(10)]))
    assert np.array_equal(te_x[..., 0], test_x[keep]) and np.array_equal(te_y, test_y[keep])
    assert np.array_equal(dm.arrays("iid")[0], te_x)
    # The same seed carves the same validation set; another seed another one.
    assert np.array_equal(make(root).arrays("val")[0], va_x)
    assert not np.array_equal(make(root, seed=1).arrays("val")[0], va_x)


def test_upper_bounds_take_everything(mnist):
    root, (train_x, _), (test_x, _) = mnist
    dm = make(root, n_train_per_class=7000, n_val_per_class=3, n_test_per_class=1200)
    assert len(dm.arrays("train")[0]) + len(dm.arrays("val")[0]) == len(train_x) == 300
    assert len(dm.arrays("val")[0]) == 30 and len(dm.arrays("test")[0]) == len(test_x)
    with pytest.raises(ConfigError, match="leaves no training image"):
        make(root, n_val_per_class=30).arrays("train")


def test_loaders_batches_and_scaling(mnist):
    root, _, _ = mnist
    dm = make(root)
    assert dm.test_set_names == ["iid"] and dm.num_classes == 10
    dm.prepare_data()
    dm.setup(None)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    xs, ys = dm.on_after_batch_transfer([x, y], 0)
    assert xs.dtype == torch.float32 and xs.min() >= -1.0 and xs.max() <= 1.0
    assert torch.allclose(xs, x.float() / 127.5 - 1.0) and torch.equal(ys, y)
    batches = list(dm.test_dataloader())
    assert all(b[0].dtype == torch.uint8 and len(b) == 3 for b in batches)
    images = torch.cat([b[0] for b in batches])
    assert torch.equal(images[:, 0], torch.from_numpy(dm.arrays("iid")[0][..., 0]))
    assert torch.cat([b[2] for b in batches]).unique().tolist() == [0]
    assert len(dm.val_set) == 50 and len(dm.train_set) == 200
    # The training shuffle depends on the training seed only.
    again = make(root)
    again.setup("fit")
    assert torch.equal(next(iter(again.train_dataloader()))[0], x)


def test_resize_grey_to_rgb_and_augmentation(mnist):
    root, _, _ = mnist
    basic = [{"_target_": "albumentations.Affine", "rotate": [-20, 20], "p": 1.0}]
    dm = make(root, image_size=36, channels=3, train_transform=build_augmentation(basic, seed=0))
    dm.setup("fit")
    assert dm.arrays("train")[0].shape == (200, 36, 36, 3)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 36, 36) and x.dtype == torch.uint8


def test_missing_files_fail_in_one_line_naming_them(mnist, tmp_path):
    root, _, _ = mnist
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError) as err:
        make(empty).prepare_data()
    message = str(err.value)
    assert "\n" not in message and all(name in message for name in ALL_FILES)
    half = tmp_path / "half"
    half.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (half / name).write_bytes((root / name).read_bytes())
    with pytest.raises(
        ConfigError, match="lacks the MNIST files t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
    ):
        make(half).prepare_data()
    with pytest.raises(ConfigError, match="needs data.root="):
        MnistDataModule().prepare_data()
    with pytest.raises(ConfigError, match="is not a folder"):
        make(tmp_path / "nope").prepare_data()


def test_broken_files_fail_in_one_line(mnist, tmp_path):
    root, _, _ = mnist
    for name in ALL_FILES:
        src = find_file(root, name)
        (tmp_path / src.name).write_bytes(src.read_bytes())
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.write_bytes(good[:-3])
    with pytest.raises(ConfigError, match="should hold 100 bytes"):
        make(tmp_path).arrays("test")
    labels.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ConfigError, match="not an IDX file"):
        make(tmp_path).arrays("test")
    labels.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 99) + good[8:-1])  # 99 labels, 100 images
    with pytest.raises(ConfigError, match="100 images but"):
        make(tmp_path).arrays("test")


def test_data_mnist_composes_for_every_arch(cfg_factory, mnist):
    root, _, _ = mnist
    for arch in ("cnn", "maxpool", "gap", "resnet18", "resnet18_aa"):
        cfg = cfg_factory("data=mnist", f"arch={arch}", f"data.root={root}")
        validate(cfg)
        assert cfg.data._target_ == "shapeshift.data.mnist.MnistDataModule"
        assert (cfg.data.image_size, cfg.data.channels, cfg.data.num_classes) == (28, 1, 10)
        assert cfg.arch.in_channels == 1 and cfg.arch.num_classes == 10 and cfg.data.root == str(root)


def test_missing_files_fail_in_one_line(cfg_factory, tmp_path, capsys):
    """As `main` runs `train` (the same one-line wiring in a subprocess: test_checkpoints.py's
    test_a_refused_checkpoint_setting_is_one_line)."""
    from shapeshift.console.errors import command_errors
    from shapeshift.train import train

    run_dir = tmp_path / "run"
    cfg = cfg_factory(
        "data=mnist", f"data.root={tmp_path}", "arch=maxpool", "debug=smoke", output_dir=run_dir
    )
    with pytest.raises(SystemExit) as exit_, command_errors():
        train(cfg)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "config error" in line]
    assert len(lines) == 1 and all(name in lines[0] for name in ALL_FILES), err[-3000:]
    assert "Traceback" not in err


@pytest.mark.slow
def test_maxpool_trains_on_mnist(cfg_factory, mnist, tmp_path):
    from shapeshift.train import train

    root, _, _ = mnist
    metrics = train(
        cfg_factory(
            "data=mnist",
            f"data.root={root}",
            "arch=maxpool",
            "debug=smoke",
            "logger=none",
            output_dir=tmp_path / "run",
        )
    )
    assert 0.0 <= metrics["test/iid/acc"] <= 1.0
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert not any(k.startswith("test/position") for k in metrics)


def test_a_one_channel_ten_class_run_is_audited(cfg_factory, mnist, tmp_path):
    """The audit reads what the run's data module says its images are: grey, ten digit classes."""
    import csv

    from PIL import Image

    from shapeshift.audit import audit
    from shapeshift.train import train
    from tests.helpers import save_job_config

    root, _, (images, labels) = mnist
    run_dir = tmp_path / "run"
    cfg = cfg_factory(
        "data=mnist",
        f"data.root={root}",
        "arch=maxpool",
        "debug=smoke",
        "logger=none",
        "trainer.max_epochs=3",
        output_dir=run_dir,
    )
    train(cfg)
    save_job_config(cfg, run_dir)
    folder = tmp_path / "field"
    folder.mkdir()
    for i in range(12):  # grey digits at another size, and one colour photo-like image
        Image.fromarray(images[i]).resize((56, 56)).save(folder / f"digit_{i:02d}_{labels[i]}.png")
    Image.fromarray(np.dstack([images[0], images[1], images[2]])).save(folder / "colour.png")

    result = audit(str(run_dir), str(folder))
    rows = list(csv.DictReader((result["out"] / "audit.csv").read_text().splitlines()))
    assert len(rows) == 13 and result["skipped"] == []
    assert {r["predicted_class"] for r in rows} <= {str(d) for d in range(10)}
    assert set(result["classes"]) == {str(d) for d in range(10)} and sum(result["classes"].values()) == 13
    for r in rows:
        assert 0.1 <= float(r["confidence"]) <= 1.0  # max of a 10-class softmax is at least 1/10
    assert (result["out"] / "contact_sheet.png").stat().st_size > 1000
