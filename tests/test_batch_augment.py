"""`aug=basic_batched`: per-sample parameters drawn in the loader, the batch transformed on the device."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shapeshift.config.errors import ConfigError
from shapeshift.data.augment import build_augmentation
from shapeshift.data.batch_augment import UNIFORMS, BatchAffine, sampling_grid, uniforms
from shapeshift.data.datamodule import ShapesDataModule
from shapeshift.train import train
from tests.helpers import LIGHT_QC, KillAtEpoch, without_measurements

OFF = {"u0": 1.0, "u3": 1.0, "u9": 1.0}  # no step fires: 1 is above every p


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randint(
        0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def apply(aug: BatchAffine, images: torch.Tensor, **chosen: float) -> torch.Tensor:
    """`images` under the parameters of the uniforms a test chose (`u3=0.0`); 0.5, the middle of every
    range, for the others."""
    u = np.full((1, UNIFORMS), 0.5)
    for name, value in chosen.items():
        u[0, int(name[1:])] = value
    return aug(images, torch.from_numpy(aug.params(u)).expand(len(images), -1))


def test_no_step_and_magnitude_zero_are_the_identity(images):
    assert torch.allclose(apply(BatchAffine(), images, **OFF), images.float(), atol=1e-3)
    still = BatchAffine(0, 0, translate=0, shear=0, rotate=0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    fired = {"u0": 0.0, "u3": 0.0, "u9": 0.0, "u1": 0.9, "u4": 0.1, "u6": 0.9, "u10": 0.3}
    assert torch.allclose(apply(still, images, **fired), images.float(), atol=1e-3)


def test_a_quarter_turn_is_rot90(images):
    out = apply(BatchAffine(rotate=90), images, **{**OFF, "u3": 0.0, "u6": 1.0})  # +90 degrees: clockwise
    assert torch.allclose(out, torch.rot90(images, -1, dims=(2, 3)).float(), atol=1e-3)


def test_a_crop_of_the_top_left_quarter_is_that_quarter_resized(images):
    aug = BatchAffine(crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), p_crop=1.0)
    out = apply(aug, images, **{**OFF, "u9": 0.0, "u12": 0.0, "u13": 0.0})
    quarter = F.interpolate(images[..., :8, :8].float(), scale_factor=2, mode="bilinear", align_corners=False)
    # the last row and column sample half a pixel past the quarter: the image's, not a replicated edge
    assert torch.allclose(out[..., :15, :15], quarter[..., :15, :15], atol=1e-3)
    assert not torch.allclose(out, quarter, atol=1e-3)


def test_a_translation_moves_by_that_share_of_the_side(images):
    out = apply(BatchAffine(translate=0.25), images, **{**OFF, "u3": 0.0, "u7": 1.0})  # +0.25 in x: 4 px
    assert torch.allclose(out[..., 4:], images[..., :-4].float(), atol=1e-3)
    assert torch.allclose(out[..., :4], images[..., :1].float().expand(-1, -1, -1, 4), atol=1e-3)  # edge


def test_brightness_and_contrast_are_albumentations_formula(images):
    aug = BatchAffine(brightness=0.2, contrast=0.3)
    out = apply(aug, images, **{**OFF, "u0": 0.0, "u1": 1.0, "u2": 0.0})  # contrast +0.3, brightness -0.2
    hwc = images[0].permute(1, 2, 0).numpy()
    reference = A.RandomBrightnessContrast(brightness_limit=(-0.2, -0.2), contrast_limit=(0.3, 0.3), p=1.0)
    expected = torch.from_numpy(reference(image=hwc)["image"]).permute(2, 0, 1).float()
    assert (out[0] - expected).abs().max() <= 1.0  # Albumentations rounds to uint8; this stays float


def test_a_samples_draws_depend_on_seed_epoch_and_index_alone():
    u = uniforms(0, np.zeros(400, np.int64), np.arange(400), UNIFORMS)
    assert u.shape == (400, UNIFORMS) and u.min() >= 0 and u.max() < 1
    assert np.all(np.abs(u.mean(0) - 0.5) < 0.05) and abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.15
    shuffled = np.random.default_rng(0).permutation(400)  # in any batch, in any order
    assert np.array_equal(uniforms(0, np.zeros(400, np.int64), shuffled, UNIFORMS), u[shuffled])
    assert not np.any(uniforms(0, np.ones(400, np.int64), np.arange(400), UNIFORMS) == u)  # another epoch
    assert not np.any(uniforms(1, np.zeros(400, np.int64), np.arange(400), UNIFORMS) == u)  # another seed


def test_each_sample_draws_its_own_parameters_and_the_ranges_hold():
    aug = BatchAffine()
    params = aug.params(uniforms(0, np.zeros(400, np.int64), np.arange(400), UNIFORMS))
    colour = params[:, 0] != 1.0
    assert 0.7 < colour.mean() < 0.9  # p_colour = 0.8
    assert np.all(np.abs(params[:, 0] - 1) <= 0.2) and np.all(np.abs(params[:, 1]) <= 0.2 * 255)
    identity = np.float32([1, 0, 1, 0, 0, 0, 1, 0])  # contrast 1, brightness 0, the identity matrix
    moved = params[~np.all(params == identity, axis=1)]  # 0.2 x 0.2 x 0.5 = 2% of samples fire no step
    assert len({p.tobytes() for p in moved}) == len(moved) >= 380


def test_a_batched_augmentation_stands_alone():
    step = {"_target_": "shapeshift.data.batch_augment.BatchAffine"}
    assert isinstance(build_augmentation([step], 0), BatchAffine)
    with pytest.raises(ConfigError, match="must be the only transform"):
        build_augmentation([step, {"_target_": "albumentations.HorizontalFlip"}], 0)


BATCHED = [{"_target_": "shapeshift.data.batch_augment.BatchAffine"}]


def batches(cache_dir, workers: int, transforms: list) -> list[torch.Tensor]:
    """One epoch's training batches as the model receives them (after `on_after_batch_transfer`)."""
    dm = ShapesDataModule(
        image_size=32,
        n_train_per_class=12,
        n_val_per_class=2,
        n_test_per_class=2,
        batch_size=8,
        num_workers=workers,
        cache_dir=str(cache_dir),
        train_transform=build_augmentation(transforms, 0),
    )
    dm.setup("fit")
    return [dm.on_after_batch_transfer(batch, 0)[0] for batch in dm.train_dataloader()]


def test_the_batches_are_the_same_with_any_workers_and_augmented(cache_dir):
    serial, parallel = batches(cache_dir, 0, BATCHED), batches(cache_dir, 2, BATCHED)
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a, b)
    assert serial[0].dtype == torch.float32 and serial[0].min() >= -1 - 1e-5 and serial[0].max() <= 1 + 1e-5
    plain = batches(cache_dir, 0, [])  # the same images, the same order, not augmented
    assert plain[0].shape == serial[0].shape and not torch.equal(plain[0], serial[0])


def test_a_run_trains_with_it_and_is_reproducible(cfg_factory, tmp_path):
    common = [
        "debug=smoke",
        "logger=none",
        "arch=cnn",
        "aug=basic_batched",
        "qc.detectors=[msp]",
        "qc.gate=msp",
    ]
    first = train(cfg_factory(*common, output_dir=tmp_path / "a"))
    again = train(cfg_factory(*common, output_dir=tmp_path / "b"))
    assert without_measurements(first) == without_measurements(again)
    plain = train(cfg_factory(*common[:3], "aug=none", *common[4:], output_dir=tmp_path / "c"))
    assert first["val/loss"] != plain["val/loss"]  # the same seed trained on other pixels


def test_the_sampling_grid_is_affine_grids():
    u = uniforms(3, np.zeros(16, np.int64), np.arange(16), UNIFORMS)
    theta = torch.from_numpy(BatchAffine().params(u))[:, 2:].reshape(-1, 2, 3)
    for height, width in ((16, 16), (12, 20)):
        expected = F.affine_grid(theta, [16, 3, height, width], align_corners=False)
        assert torch.allclose(sampling_grid(theta, height, width), expected, atol=1e-6)


def test_grey_images_keep_their_one_channel():
    generator = torch.Generator().manual_seed(1)
    grey = torch.randint(0, 256, (4, 1, 20, 20), dtype=torch.uint8, generator=generator)
    aug = BatchAffine()
    out = aug(grey, torch.from_numpy(aug.params(uniforms(0, np.zeros(4, np.int64), np.arange(4), UNIFORMS))))
    assert out.shape == (4, 1, 20, 20) and out.min() >= 0 and out.max() <= 255
    assert not torch.allclose(out, grey.float())


def test_a_killed_run_resumes_to_the_same_result(cfg_factory, tmp_path):
    """A resumed epoch redraws the same parameters for the same samples: they are keyed by epoch and index."""
    common = ["debug=smoke", "logger=none", "arch=cnn", "aug=basic_batched", "trainer.max_epochs=2"]
    common += LIGHT_QC
    whole = train(cfg_factory(*common, output_dir=tmp_path / "whole"))
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg_factory(*common, output_dir=tmp_path / "killed"), callbacks=[KillAtEpoch(1)])
    resumed = train(cfg_factory(*common, output_dir=tmp_path / "killed"))
    assert resumed["epochs"] == 2
    assert without_measurements(resumed) == without_measurements(whole)
