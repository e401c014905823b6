"""`shift=corruptions`: every operation at every severity, measured on real photos (scikit-image ships them),
determinism by (seed, image), grey images, and the catalog's checks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
from omegaconf import OmegaConf

from shapeshift.data import corruptions, shifts
from shapeshift.data.shifts import ShiftError
from tests.helpers import CONF

CATALOG = OmegaConf.to_container(OmegaConf.load(CONF / "shift" / "corruptions.yaml"))
FAMILIES = CATALOG["families"]
IMAGENET_C = [
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression",
]  # fmt: skip
HELD_OUT = ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
GEOMETRIC = ["translate", "scale", "rotation", "flip", "border_crop"]

# Where the published parameters do not grow the pixel change at every step (measured on 64 photo crops):
NON_MONOTONE = {
    "glass_blur": "s1 blurs less (sigma 0.1) before the same 1-px shuffle as s2, so more texture moves",
    "elastic_transform": "the affine part shrinks from s1 (8% of the side) to s5 (2%) as the elastic grows",
    "spatter": "s3 has the widest liquid (std 0.3); s4 switches to mud with less coverage",
    "saturate": "s1-s2 desaturate (x0.3, x0.1), s3-s5 oversaturate (x2 to x30)",
}
# Magnitude 0 of each operation: the image itself (within the 1 grey level of a float round trip)
ZERO = {
    "gaussian_noise": {"std": 0.0},
    "impulse_noise": {"amount": 0.0},
    "speckle_noise": {"std": 0.0},
    "defocus_blur": {"radius": 0.0, "alias_blur": 0.0},
    "glass_blur": {"sigma": 0.0, "max_delta": 0, "iterations": 1},
    "motion_blur": {"radius": 0, "sigma": 0.0},
    "zoom_blur": {"max_zoom": 1.0, "step": 0.01},
    "gaussian_blur": {"sigma": 0.0},
    "frost": {"image": 1.0, "frost": 0.0},
    "fog": {"strength": 0.0, "decay": 3.0},
    "spatter": {"mean": 0.0, "std": 0.0, "sigma": 0.7, "threshold": 0.7, "intensity": 0.0, "mud": False},
    "brightness": {"delta": 0.0},
    "saturate": {"factor": 1.0, "offset": 0.0},
    "global_contrast": {"factor": 1.0},
    "elastic_transform": {"alpha": 0.0, "sigma": 0.0, "affine": 0.0},
    "pixelate": {"factor": 1.0},
    "translate": {"fraction": 0.0},
    "rescale": {"factor": 1.0},
    "rotate": {"degrees": 0.0},
    "hflip": {"share": 0.0},
    "border_crop": {"fraction": 0.0},
}
NO_ZERO = {  # operations whose every setting changes pixels
    "shot_noise": "Poisson sampling: no rate is exact",
    "snow": "flakes are drawn at every setting",
    "jpeg_compression": "quality 100 is still lossy",
}


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """64 crops of 64 x 64 from four photos: texture, faces, edges, sky."""
    names = ("astronaut", "chelsea", "coffee", "rocket")
    big = [cv2.resize(getattr(skimage.data, n)(), (256, 256), interpolation=cv2.INTER_AREA) for n in names]
    return np.stack(
        [b[y : y + 64, x : x + 64] for b in big for y in range(0, 256, 64) for x in range(0, 256, 64)]
    )


def change(before: np.ndarray, after: np.ndarray) -> float:
    return float(np.abs(after.astype(np.float64) - before).mean())


def test_the_catalog_is_imagenet_c_its_held_out_four_and_the_geometric_shifts():
    assert list(FAMILIES) == IMAGENET_C + HELD_OUT + GEOMETRIC
    shifts.validate_catalog(FAMILIES)
    assert shifts.image_level_families(FAMILIES) == list(FAMILIES)  # every family works on any data
    assert set(ZERO) | set(NO_ZERO) == set(corruptions.IMAGE_OPS)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_severity_changes_the_image_and_the_change_grows(photos, family):
    changes = []
    for k, ops in enumerate(FAMILIES[family], start=1):
        out = corruptions.corrupt_set(photos, ops, 0, f"{family}/s{k}")
        assert out.shape == photos.shape and out.dtype == np.uint8
        changes.append(change(photos, out))
    assert min(changes) > 0.5, changes  # severity 1 is visible: more than half a grey level on average
    if family == "elastic_transform":
        assert changes[0] > changes[-1]  # see NON_MONOTONE
    else:
        assert changes[-1] > 1.2 * changes[0], changes
    steps = np.diff(changes) >= -0.01 * np.array(changes[:-1])
    assert steps.all() == (family not in NON_MONOTONE), (family, changes)


@pytest.mark.parametrize("op", sorted(ZERO))
def test_magnitude_zero_is_the_identity(photos, op):
    out = corruptions.corrupt_set(photos[:8], {op: ZERO[op]}, 0, "zero")
    assert np.abs(out.astype(int) - photos[:8]).max() <= 1


def test_no_operation_is_the_identity_and_severity_zero_is_the_test_set(photos):
    assert np.array_equal(corruptions.corrupt_set(photos, {}, 0, "iid"), photos)


def test_each_image_has_its_own_stream_whatever_the_order(photos):
    ops = {"gaussian_noise": {"std": 0.08}, "jpeg_compression": {"quality": 30}}
    once = corruptions.corrupt_set(photos, ops, 0, "gaussian_noise/s2")
    order = np.random.default_rng(1).permutation(len(photos))
    assert np.array_equal(corruptions.corrupt_set(photos[order], ops, 0, "gaussian_noise/s2"), once[order])
    assert np.array_equal(corruptions.corrupt_set(photos[:5], ops, 0, "gaussian_noise/s2"), once[:5])
    assert not np.array_equal(corruptions.corrupt_set(photos, ops, 1, "gaussian_noise/s2"), once)  # seed
    assert not np.array_equal(corruptions.corrupt_set(photos, ops, 0, "gaussian_noise/s3"), once)  # set
    twins = np.stack([photos[0], photos[0]])  # identical pixels: identical draws, by design
    a, b = corruptions.corrupt_set(twins, ops, 0, "gaussian_noise/s2")
    assert np.array_equal(a, b)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_grey_images_keep_their_one_channel(photos, family):
    grey = np.stack([cv2.cvtColor(p, cv2.COLOR_RGB2GRAY) for p in photos[:4]])[..., None]
    out = corruptions.corrupt_set(grey, FAMILIES[family][2], 0, f"{family}/s3")
    assert out.shape == grey.shape and out.dtype == np.uint8
    if family == "saturate":  # a grey image has no saturation to scale: the set equals the i.i.d. one
        assert change(grey, out) == 0
    else:
        assert change(grey, out) > 0.5


def test_images_of_another_size_scale_their_lengths(photos):
    """A blur radius is given for 64 px: at 128 px the same severity blurs twice as far, so the change of a
    2x upsampled photo matches the 64-px one (the upsampled photo is smoother, so a little lower)."""
    big = np.stack([cv2.resize(p, (128, 128), interpolation=cv2.INTER_CUBIC) for p in photos[:16]])
    ops = FAMILIES["defocus_blur"][2]
    small_change = change(photos[:16], corruptions.corrupt_set(photos[:16], ops, 0, "d"))
    big_change = change(big, corruptions.corrupt_set(big, ops, 0, "d"))
    # The radius a 64-px image gets, unscaled, on the 128-px one: half the 128-px radius.
    halved = {"defocus_blur": {**ops["defocus_blur"], "radius": ops["defocus_blur"]["radius"] / 2}}
    unscaled = change(big, corruptions.corrupt_set(big, halved, 0, "d"))
    assert 0.6 * small_change < big_change < 1.1 * small_change
    assert unscaled < 0.9 * big_change


@pytest.mark.parametrize(
    ("families", "message"),
    [
        ({"x": [{"gaussian_noise": {}}] * 5}, r"gaussian_noise needs \['std'\]"),
        ({"x": [{"gaussian_noise": {"std": 0.1, "mean": 0}}] * 5}, r"takes \['std'\], not \['mean'\]"),
        (
            {"x": [{"gaussian_noise": {"std": 0.1}, "position": {"fraction": 1.0}}] * 5},
            "mixes shape operations with pixel",
        ),
        ({"x": [{"gaussian_noise": {"std": 0.1}}] * 4}, "has 4 severities"),
        ({"x": [{"fisheye": {}}] * 5}, "unknown operation 'fisheye'"),
    ],
)
def test_a_bad_catalog_fails_with_one_line(families, message):
    with pytest.raises(ShiftError, match=message):
        shifts.validate_catalog(families)


def test_data_that_renders_no_shape_keeps_the_pixel_families_only():
    from shapeshift.data.base import ArrayDataModule

    star_moon = OmegaConf.to_container(OmegaConf.load(CONF / "shift" / "default.yaml"))
    mixed = {**star_moon, "families": {**star_moon["families"], "fog": FAMILIES["fog"]}}
    dm = ArrayDataModule()
    dm.use_catalog(mixed, renders=False)
    assert list(dm.families) == ["fog"]
    assert dm.catalog_set_names() == [f"fog/s{k}" for k in range(1, 6)] + ["mix"]
    dm.use_catalog(mixed, renders=True)
    assert list(dm.families) == [*star_moon["families"], "fog"]
    dm.use_catalog(CATALOG, renders=False)
    assert len(dm.catalog_set_names()) == 5 * 24  # mix_n_per_class 0: no mix set
