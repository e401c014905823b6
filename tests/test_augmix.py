"""The natural-image presets `aug=augmix` and `aug=trivial`: the AugMix formula, no operation the catalog
tests, seeded and picklable, grey images, and a training run from the command line."""

import json
import pickle
import random

import albumentations as A
import numpy as np
import pytest
import skimage.data
from omegaconf import OmegaConf

import shapeshift.config.schema  # noqa: F401 - the ${sym:...} resolvers the presets use
from shapeshift.data.augment import build_augmentation
from shapeshift.data.augmix import EXCLUDED_FOR_OVERLAP, AugMix
from shapeshift.engine.pipeline import augmentation_transforms
from tests.helpers import CONF, run_cli

PRESETS = ("augmix", "trivial")

# Albumentations transforms that compute what a catalog set tests (conf/shift/corruptions.yaml): the
# noises, blurs, weather, digital and colour operations. A preset built on any of them would have seen
# the corruption it is scored on.
CORRUPTION_LOOKALIKES = {
    "GaussNoise", "ShotNoise", "SaltAndPepper", "MultiplicativeNoise", "ISONoise", "AdditiveNoise",
    "Defocus", "GlassBlur", "MotionBlur", "ZoomBlur", "GaussianBlur", "Blur", "MedianBlur", "AdvancedBlur",
    "RandomSnow", "RandomFog", "RandomRain", "RandomSunFlare", "Spatter", "RandomShadow",
    "ImageCompression", "Downscale", "Pixelization", "ElasticTransform", "GridDistortion",
    "RandomBrightnessContrast", "ColorJitter", "HueSaturationValue", "RandomGamma", "Sharpen",
    "UnsharpMask", "Emboss", "RandomToneCurve", "CLAHE", "FancyPCA", "PlasmaBrightnessContrast",
    "Illumination",
}  # fmt: skip


def photos(n: int = 8, size: int = 64) -> np.ndarray:
    import cv2

    cat = cv2.resize(skimage.data.chelsea(), (4 * size, 2 * size), interpolation=cv2.INTER_AREA)
    return np.stack([cat[y : y + size, x : x + size] for y in (0, size) for x in range(0, 4 * size, size)])[
        :n
    ]


def pipeline(cfg_factory, aug: str, seed: int = 0) -> A.Compose:
    return build_augmentation(augmentation_transforms(cfg_factory(f"aug={aug}")), seed)


def every_transform(transform):
    yield transform
    for child in [*getattr(transform, "transforms", []), *getattr(transform, "operations", [])]:
        yield from every_transform(child)


@pytest.mark.parametrize("aug", PRESETS)
def test_no_preset_uses_an_operation_the_catalog_tests(aug, cfg_factory):
    names = {type(t).__name__ for t in every_transform(pipeline(cfg_factory, aug))}
    assert names.isdisjoint(CORRUPTION_LOOKALIKES), names & CORRUPTION_LOOKALIKES
    # What each preset keeps: AugMix's nine operations (TrivialAugment adds the identity).
    assert {"AutoContrast", "Equalize", "Posterize", "Solarize", "Affine"} <= names
    # Every excluded operation names catalog sets that exist: the reason for the exclusion stays true.
    catalog = OmegaConf.load(CONF / "shift" / "corruptions.yaml").families
    assert all(s in catalog for sets in EXCLUDED_FOR_OVERLAP.values() for s in sets)
    assert set(EXCLUDED_FOR_OVERLAP) == {"brightness", "contrast", "color", "sharpness"}


def test_augmix_mixes_the_chains_with_the_image_as_the_paper_does():
    """One chain of one inversion: out = (1 - m) x + m (255 - x) for one m in [0, 1] per image, so the
    mixing formula can be read back from the pixels."""
    images = photos()
    mixer = AugMix([A.InvertImg()], width=1, depth=1, p=1.0)
    mixer.set_random_state(np.random.default_rng(0), random.Random(0))
    ms = []
    for x in images:
        out = mixer(image=x)["image"].astype(np.float64)
        x = x.astype(np.float64)
        varying = np.abs(255 - 2 * x) > 50  # pixels where the inversion moves the value a lot
        m = float(np.median((out - x)[varying] / (255 - 2 * x)[varying]))
        assert 0.0 <= m <= 1.0
        assert np.abs(np.rint((1 - m) * x + m * (255 - x)) - out).max() <= 1.0
        ms.append(m)
    assert np.std(ms) > 0.05  # m ~ Beta(1, 1): it differs between images


def test_augmix_of_identity_chains_is_the_image():
    images = photos()
    mixer = AugMix([A.NoOp()], width=3, depth=-1, p=1.0)
    assert all(np.array_equal(mixer(image=x)["image"], x) for x in images)


def test_augmix_refuses_an_empty_or_zero_depth_chain():
    with pytest.raises(ValueError, match="operations"):
        AugMix([], p=1.0)
    with pytest.raises(ValueError, match="depth"):
        AugMix([A.NoOp()], depth=0)


@pytest.mark.parametrize("aug", PRESETS)
def test_presets_are_seeded_pickle_and_change_images(aug, cfg_factory):
    images = photos()

    def run(p):
        return np.stack([p(image=x)["image"] for x in images])

    a, b = pipeline(cfg_factory, aug, 7), pipeline(cfg_factory, aug, 7)
    copy = pickle.loads(pickle.dumps(a))  # what a DataLoader worker gets
    first = run(a)
    assert np.array_equal(first, run(b)) and np.array_equal(first, run(copy))
    assert not np.array_equal(first, run(pipeline(cfg_factory, aug, 8)))
    assert first.shape == images.shape and first.dtype == np.uint8
    changed = np.abs(first.astype(int) - images).mean(axis=(1, 2, 3)) > 0.5
    assert changed.mean() >= 0.5  # trivial draws the identity 1 time in 10


@pytest.mark.parametrize("aug", PRESETS)
def test_presets_take_grey_images(aug, cfg_factory):
    grey = photos().mean(axis=3, keepdims=True).astype(np.uint8)
    p = pipeline(cfg_factory, aug)
    out = np.stack([p(image=x)["image"] for x in grey])
    assert out.shape == grey.shape and out.dtype == np.uint8


@pytest.mark.parametrize("aug", PRESETS)
def test_presets_train_from_the_command_line(aug, tmp_path, cache_dir):
    run_dir = tmp_path / aug
    args = [f"aug={aug}", "debug=smoke", "logger=none", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"]
    done = run_cli("train", args, cache_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["aug"] == aug and 0.0 <= metrics["test/iid/acc"] <= 1.0
