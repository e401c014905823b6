"""Data loading: workers change how fast batches come, never what is in them (the augmentation of a
training sample depends only on seed, epoch and sample), nor what the shift catalog they make holds, and
DDP splits the batch among its processes."""

import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from shapeshift.config.errors import ConfigError
from shapeshift.data import cache, corruptions
from shapeshift.data.augment import build_augmentation
from shapeshift.data.datamodule import ShapesDataModule
from shapeshift.train import train
from tests.helpers import CONF, without_measurements

# Random crops and flips, drawn per sample: visible in every image.
AUG = [
    {"_target_": "albumentations.HorizontalFlip", "p": 0.5},
    {
        "_target_": "albumentations.Affine",
        "translate_percent": [-0.2, 0.2],
        "rotate": [-30, 30],
        "border_mode": 1,
        "p": 1.0,
    },
]


def datamodule(cache_dir, num_workers: int, seed: int = 0) -> ShapesDataModule:
    dm = ShapesDataModule(
        image_size=32,
        n_train_per_class=24,
        n_val_per_class=4,
        n_test_per_class=4,
        batch_size=8,
        eval_batch_size=8,
        num_workers=num_workers,
        cache_dir=str(cache_dir),
        train_transform=build_augmentation(AUG, seed),
        train_seed=seed,
    )
    dm.setup("fit")
    return dm


def epoch_batches(dm: ShapesDataModule, epoch: int) -> list[torch.Tensor]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # as Lightning does before every epoch
    return [x for x, _ in loader]


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_are_bit_identical_with_any_number_of_workers(cache_dir, workers):
    serial = datamodule(cache_dir, 0)
    parallel = datamodule(cache_dir, workers)
    for epoch in (0, 1):
        expected, got = epoch_batches(serial, epoch), epoch_batches(parallel, epoch)
        assert len(got) == len(expected) == 6
        for a, b in zip(expected, got, strict=True):
            assert torch.equal(a, b)
    # Each epoch draws anew, and another seed draws otherwise.
    assert not torch.equal(epoch_batches(serial, 0)[0], epoch_batches(serial, 1)[0])
    assert not torch.equal(epoch_batches(serial, 0)[0], epoch_batches(datamodule(cache_dir, 0, seed=1), 0)[0])


def test_two_workers_do_not_replay_one_stream(cache_dir):
    """The failure this guards against: every worker held a copy of the same augmentation stream, so with
    identical input images, batch k of worker 0 equalled batch k of worker 1."""
    dm = datamodule(cache_dir, 2)
    dm.train_set.images = np.repeat(dm.train_set.images[:1], len(dm.train_set), axis=0)  # one image, 48 times
    first, second = epoch_batches(dm, 0)[:2]  # worker 0's first batch, then worker 1's
    assert not torch.equal(first, second)
    assert len({x.numpy().tobytes() for x in first}) == len(first)  # no two samples augmented alike


def test_a_sample_is_augmented_the_same_wherever_it_is_drawn(cache_dir):
    ds = datamodule(cache_dir, 0).train_set
    a, b = ds[(3, 5)][0], ds[(0, 7)][0]
    assert torch.equal(ds[(3, 5)][0], a) and torch.equal(ds[(0, 7)][0], b)  # in any order
    assert not torch.equal(ds[(4, 5)][0], a)  # another epoch: another draw


def test_metrics_are_bit_identical_with_two_workers(cfg_factory, tmp_path):
    common = ["debug=smoke", "logger=none", "arch=cnn", "aug=basic", "qc.detectors=[msp]", "qc.gate=msp"]
    serial = train(cfg_factory(*common, output_dir=tmp_path / "w0"))
    parallel = train(cfg_factory(*common, "data.num_workers=2", output_dir=tmp_path / "w2"))
    assert without_measurements(parallel) == without_measurements(serial)
    assert serial["fingerprint"] == parallel["fingerprint"]  # num_workers is not part of the result


def test_the_batch_must_split_evenly_among_the_processes(cache_dir):
    from types import SimpleNamespace

    dm = datamodule(cache_dir, 0)  # batch_size 8
    dm.trainer = SimpleNamespace(world_size=2)
    assert dm.train_dataloader().batch_size == 4
    dm.trainer = SimpleNamespace(world_size=3)
    with pytest.raises(ConfigError, match="multiple of the 3 processes"):
        dm.train_dataloader()


def catalog_module(cache_dir, num_workers: int) -> ShapesDataModule:
    """Star/moon families (rendered) and ImageNet-C ones (pixels), with the mix that draws from both."""
    shapes = OmegaConf.load(CONF / "shift" / "default.yaml").families
    pixels = OmegaConf.load(CONF / "shift" / "corruptions.yaml").families
    families = {"rotation": shapes.rotation, "photo": shapes.background_photo, "fog": pixels.fog}
    shift = {"families": OmegaConf.to_container(OmegaConf.create(families)), "n_per_class": 3}
    return ShapesDataModule(
        image_size=32,
        n_train_per_class=4,
        n_val_per_class=2,
        n_test_per_class=6,
        num_workers=num_workers,
        cache_dir=str(cache_dir),
        shift={**shift, "mix_n_per_class": 3},
    )


def test_the_catalog_made_by_workers_is_the_same_bytes(tmp_path, monkeypatch):
    serial, parallel = catalog_module(tmp_path / "w0", 0), catalog_module(tmp_path / "w2", 2)
    serial.prepare_data()
    write, writers = cache._write, tmp_path / "writers"

    def recorded(path, arrays):  # which process wrote each file
        with open(writers, "a") as f:
            f.write(f"{path.parent.name} {os.getpid()}\n")
        write(path, arrays)

    monkeypatch.setattr(cache, "_write", recorded)
    parallel.prepare_data()
    pids = [int(line.split()[1]) for line in writers.read_text().splitlines()]
    assert len(pids) == 19 and pids.count(os.getpid()) == 3  # the splits here, the 16 sets in 2 workers
    assert len(set(pids)) == 3
    files = sorted(p.name for p in (tmp_path / "w0").glob("*.npz"))
    assert len(files) == 3 + 15 + 1  # the splits, 3 families x 5 severities, the mix
    assert files == sorted(p.name for p in (tmp_path / "w2").glob("*.npz"))
    for name in files:
        assert (tmp_path / "w0" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes(), name
    parallel.setup("test")  # and the module reads what its workers made
    images, _ = parallel.arrays("fog/s5")
    assert np.array_equal(images, serial.arrays("fog/s5")[0])


def test_a_one_line_error_in_a_worker_is_raised_as_itself(tmp_path, monkeypatch):
    def broken(*_, **__):
        raise ConfigError("shift: this corruption cannot be made")

    monkeypatch.setattr(corruptions, "corrupt_set", broken)  # the workers are forked: they inherit it
    with pytest.raises(ConfigError, match="^shift: this corruption cannot be made$"):
        catalog_module(tmp_path, 2).prepare_data()
