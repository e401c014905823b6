"""`aug=augmix_batched`: AugMix's recipe on the batch; each operation against its reference."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from shapeshift.config.errors import ConfigError
from shapeshift.data.augmix import EXCLUDED_FOR_OVERLAP
from shapeshift.data.batch_augment import uniforms
from shapeshift.data.batch_augmix import OPERATIONS, BatchAugMix
from shapeshift.train import train
from tests.helpers import LIGHT_QC, without_measurements
from tests.test_batch_augment import batches

AUGMIX = [{"_target_": "shapeshift.data.batch_augmix.BatchAugMix"}]


@pytest.fixture
def images() -> torch.Tensor:
    """Photos' worth of structure at 64 px: smooth gradients plus noise, each channel its own range."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 64)[None, None, None, :] * torch.linspace(0.3, 1, 64)[None, None, :, None]
    x = 40 + 150 * ramp * torch.tensor([1.0, 0.7, 0.4])[None, :, None, None]
    return (x + 20 * torch.rand(4, 3, 64, 64, generator=g)).round().clamp(0, 255).to(torch.uint8)


def half(n: int) -> torch.Tensor:
    return torch.full((n,), 0.5)


def test_equalize_is_opencvs_equalize_hist_per_channel(images):
    out = BatchAugMix.op_equalize(images.float(), half(4))
    for i in range(4):
        for c in range(3):
            expected = cv2.equalizeHist(images[i, c].numpy())
            assert np.array_equal(out[i, c].numpy().astype(np.uint8), expected)
    flat = torch.full((1, 1, 8, 8), 77.0)  # one grey level: unchanged
    assert torch.equal(BatchAugMix.op_equalize(flat, half(1)), flat)


def test_autocontrast_stretches_each_channel_to_the_full_range(images):
    out = BatchAugMix.op_autocontrast(images.float(), half(4))
    assert torch.allclose(out.amin(dim=(2, 3)), torch.zeros(4, 3), atol=1e-3)
    assert torch.allclose(out.amax(dim=(2, 3)), torch.full((4, 3), 255.0), atol=1e-3)
    flat = torch.full((1, 3, 8, 8), 77.0)
    assert torch.equal(BatchAugMix.op_autocontrast(flat, half(1)), flat)


def test_posterize_and_solarize_are_albumentations(images):
    aug = BatchAugMix(posterize_bits=(3, 4), solarize_threshold=(0.7, 1.0))
    hwc = images[0].permute(1, 2, 0).numpy()
    for magnitude, bits in ((0.1, 3), (0.9, 4)):
        out = aug.op_posterize(images[:1].float(), torch.tensor([magnitude]))[0]
        expected = A.Posterize(num_bits=(bits, bits), p=1.0)(image=hwc)["image"]
        assert np.array_equal(out.permute(1, 2, 0).numpy().astype(np.uint8), expected)
    out = aug.op_solarize(images[:1].float(), torch.tensor([0.0]))[0]  # threshold 0.7 of 255
    expected = A.Solarize(threshold_range=(0.7, 0.7), p=1.0)(image=hwc)["image"]
    assert np.array_equal(out.permute(1, 2, 0).numpy().astype(np.uint8), expected)


@pytest.mark.parametrize("name", ["rotate", "shear_x", "shear_y", "translate_x", "translate_y"])
def test_a_geometric_operation_at_the_middle_magnitude_is_the_identity_and_moves_otherwise(images, name):
    op = getattr(BatchAugMix(), f"op_{name}")
    x = images.float()
    assert torch.allclose(op(x, half(4)), x, atol=1e-3)
    assert (op(x, torch.full((4,), 0.99)) - x).abs().mean() > 1


def test_a_translation_moves_by_its_share_of_the_side(images):
    aug = BatchAugMix(translate=0.25)
    out = aug.op_translate_x(images.float(), torch.full((4,), 1.0))  # +0.25 of 64 px: 16 px
    assert torch.allclose(out[..., 16:], images[..., :-16].float(), atol=1e-3)


def chosen(width: int = 1, **values: float) -> np.ndarray:
    """One sample's uniforms for a one-chain BatchAugMix: `depth` (0: one step), `op0`, `mag0`, `m`."""
    u = np.full((1, 7 * width + width + 1), 0.5)
    u[0, 0] = values.get("depth", 0.0)
    u[0, 1] = (values.get("op0", 0) + 0.5) / len(OPERATIONS)
    u[0, 4] = values.get("mag0", 0.5)
    u[0, -1] = values.get("m", 0.5)
    return u


def test_a_chain_mixes_into_the_image_by_m(images):
    aug = BatchAugMix(width=1)
    equalize = OPERATIONS.index("equalize")
    for m in (0.0, 0.25, 1 - 1e-9):
        params = torch.from_numpy(aug.params(chosen(op0=equalize, m=m))).expand(4, -1)
        expected = (1 - m) * images.float() + m * BatchAugMix.op_equalize(images.float(), half(4))
        assert torch.allclose(aug(images, params), expected, atol=1e-2)


def test_the_draws_cover_every_operation_and_depth_and_weights_sum_to_one():
    aug = BatchAugMix()
    params = aug.params(uniforms(0, np.zeros(2000, np.int64), np.arange(2000), aug.n_uniforms))
    chains = params[:, :21].reshape(-1, 3, 7)
    assert set(np.unique(chains[:, :, 0])) == {1.0, 2.0, 3.0}
    assert set(np.unique(chains[:, :, 1:4])) == set(map(float, range(len(OPERATIONS))))
    assert np.allclose(params[:, 21:24].sum(1), 1, atol=1e-5) and np.all(params[:, 21:24] > 0)
    assert 0.45 < params[:, 24].mean() < 0.55  # m ~ Beta(1, 1)


def test_the_operations_are_augmixs_without_what_the_catalog_tests():
    assert len(OPERATIONS) == 9
    assert not set(OPERATIONS) & set(EXCLUDED_FOR_OVERLAP)
    with pytest.raises(ConfigError, match="alpha=0.5"):
        BatchAugMix(alpha=0.5)


def test_the_batches_are_the_same_with_any_workers(cache_dir):
    serial, parallel = batches(cache_dir, 0, AUGMIX), batches(cache_dir, 2, AUGMIX)
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(batches(cache_dir, 0, [])[0], serial[0])


def test_a_run_trains_with_it_and_is_reproducible(cfg_factory, tmp_path):
    common = ["debug=smoke", "logger=none", "arch=cnn", "aug=augmix_batched", *LIGHT_QC]
    first = train(cfg_factory(*common, output_dir=tmp_path / "a"))
    again = train(cfg_factory(*common, output_dir=tmp_path / "b"))
    assert without_measurements(first) == without_measurements(again)
    assert first["aug"] == "augmix_batched"
