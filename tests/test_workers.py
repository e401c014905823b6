"""Data loading: workers change how fast batches come, never what is in them (the augmentation of a
training sample depends only on seed, epoch and sample), and DDP splits the batch among its processes."""

import numpy as np
import pytest
import torch

from shapeshift.data.augment import build_augmentation
from shapeshift.data.datamodule import ShapesDataModule
from shapeshift.train import train
from tests.helpers import without_measurements

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

    from shapeshift.config.errors import ConfigError

    dm = datamodule(cache_dir, 0)  # batch_size 8
    dm.trainer = SimpleNamespace(world_size=2)
    assert dm.train_dataloader().batch_size == 4
    dm.trainer = SimpleNamespace(world_size=3)
    with pytest.raises(ConfigError, match="multiple of the 3 processes"):
        dm.train_dataloader()
