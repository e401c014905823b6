"""Augmentations: the `strong` preset's background swaps (seeded, no eval photo leaks), flips and shifts."""

import pickle
from collections import Counter

import albumentations as A
import cv2
import numpy as np
import pytest

import shapeshift.config.schema  # noqa: F401 - stores the schemas the configs compose against
from shapeshift.data import backgrounds
from shapeshift.data.augment import build_augmentation
from shapeshift.data.augment_ops import (
    RandomPatternBackground,
    RandomPhotoBackground,
    replace_background,
    shape_coverage,
)
from shapeshift.data.render import render, sample_params
from shapeshift.engine.pipeline import augmentation_transforms


def shapes(n_per_class: int = 8, size: int = 64, seed: int = 0):
    params = sample_params(n_per_class, size, np.random.default_rng(seed))
    images, masks = render(params, size)
    return params, images, masks


def strong_pipeline(cfg_factory, seed: int, *overrides: str) -> A.Compose:
    """Exactly as train.py builds it: compose conf/, resolve the aug's transforms, build the Compose."""
    cfg = cfg_factory("aug=strong", *overrides)
    return build_augmentation(augmentation_transforms(cfg), seed)


def test_coverage_is_the_renderers_mask():
    params, images, masks = shapes()
    for img, mask, bg in zip(images, masks, params.bg, strict=True):
        coverage, level = shape_coverage(img)
        assert level == int(bg)
        assert np.abs(coverage - mask).max() < 0.02  # uint8 rounding of the anti-aliased edge only
    assert shape_coverage(np.full((16, 16, 3), 200, np.uint8)) is None  # no shape: nothing to swap


@pytest.mark.parametrize(
    "op",
    [RandomPatternBackground(contrast=(0.4, 0.8), p=1.0), RandomPhotoBackground(alpha=(0.6, 1.0), p=1.0)],
    ids=["pattern", "photo"],
)
def test_shape_pixels_kept_and_background_replaced(op):
    _, images, masks = shapes()
    pipeline = A.Compose([op], seed=0)
    changed, moved = [], []
    for img, mask in zip(images, masks, strict=True):
        out = pipeline(image=img)["image"]
        assert out.shape == img.shape and out.dtype == np.uint8
        inside, outside = mask >= 1.0, mask <= 0.0
        assert np.array_equal(out[inside], img[inside])  # the shape, bit for bit
        diff = np.abs(out.astype(int) - img)[outside]
        changed.append(np.any(diff > 0, axis=1).mean())
        moved.append(diff.mean())
        # The soft edge is re-blended with the new background too: no halo of the old grey.
        edge = (mask > 0.1) & (mask < 0.9)
        assert np.any(out[edge] != img[edge])
    assert min(changed) > 0.3 and np.mean(changed) > 0.8, changed  # background pixels replaced
    assert np.mean(moved) > 15, moved  # by a clearly different picture, not a shade of the old grey


def test_grey_and_single_channel_images():
    _, images, masks = shapes(2, 32)
    grey = images[0, ..., 0]
    make = lambda level, size: np.dstack([np.full((size, size), 20.0)] * 3)  # noqa: E731
    for img in (grey, grey[..., None]):
        out = replace_background(img, make)
        assert out.shape == img.shape
        inside, outside = masks[0] >= 1.0, masks[0] <= 0.0
        assert np.array_equal(out.reshape(32, 32)[inside], grey[inside])
        assert np.all(out.reshape(32, 32)[outside] == 20)


def test_invalid_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="contrast"):
        RandomPatternBackground(contrast=(0.8, 0.1))
    with pytest.raises(ValueError, match="kinds"):
        RandomPatternBackground(kinds=["plaid"])
    with pytest.raises(ValueError, match="alpha"):
        RandomPhotoBackground(alpha=(0.5, 1.5))


def test_strong_is_deterministic_for_a_seed_and_pickles(cfg_factory):
    _, images, _ = shapes(16)

    def run(pipeline):
        return np.stack([pipeline(image=img)["image"] for img in images])

    a, b = strong_pipeline(cfg_factory, 7), strong_pipeline(cfg_factory, 7)
    copy = pickle.loads(pickle.dumps(a))  # what a DataLoader worker gets
    first = run(a)
    assert np.array_equal(first, run(b))
    assert np.array_equal(first, run(copy))
    assert not np.array_equal(first, run(strong_pipeline(cfg_factory, 8)))
    # Both swaps run, and most images get a new background.
    names = {type(t).__name__ for t in a.transforms[2].transforms}
    assert names == {"RandomPatternBackground", "RandomPhotoBackground"}
    # The photo cache (megabytes) does not travel with the pickle.
    assert len(pickle.dumps(a)) < 200_000


def test_no_evaluation_photo_reaches_training(cfg_factory, monkeypatch):
    """Spy on every way a photo is loaded while the strong pipeline is built and applied many times."""
    splits, shipped = [], []
    real_load, real_shipped = backgrounds.load_photos, backgrounds._shipped

    def load_spy(split, folder=None):
        splits.append(split)
        return real_load(split, folder)

    def shipped_spy(name):
        shipped.append(name)
        return real_shipped(name)

    monkeypatch.setattr(backgrounds, "load_photos", load_spy)
    monkeypatch.setattr(backgrounds, "_shipped", shipped_spy)
    _, images, _ = shapes(20, 48)
    for seed in range(4):
        pipeline = strong_pipeline(cfg_factory, seed, "data.image_size=48")
        for img in images:
            pipeline(image=img)
        # A copy in a worker reloads its photos: through the same guarded path.
        worker = pickle.loads(pickle.dumps(pipeline))
        for img in images[:10]:
            worker(image=img)
    assert splits and set(splits) == {"train"}
    assert shipped, "the photo transform never ran: the test would prove nothing"
    assert set(shipped) <= set(backgrounds.photo_names("train"))
    assert set(shipped).isdisjoint(backgrounds.photo_names("eval"))


def test_no_evaluation_photo_from_a_users_folder(cfg_factory, monkeypatch, tmp_path):
    """With `shift.photo_dir=...`, training reads only the folder's train half, file by file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        cv2.imwrite(str(folder / f"photo_{i}.png"), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    eval_names = set(backgrounds.photo_names("eval", str(folder)))
    train_names = set(backgrounds.photo_names("train", str(folder)))
    assert eval_names and train_names

    read = []
    real_imread = cv2.imread
    monkeypatch.setattr(
        backgrounds.cv2, "imread", lambda path, *a: read.append(path) or real_imread(path, *a)
    )
    monkeypatch.setattr(backgrounds, "_shipped", lambda name: pytest.fail(f"shipped photo {name} loaded"))
    _, images, _ = shapes(16, 32)
    for seed in range(3):
        pipeline = strong_pipeline(cfg_factory, seed, "data.image_size=32", f"shift.photo_dir={folder}")
        photo_op = pipeline.transforms[2].transforms[1]
        assert photo_op.photo_dir == str(folder)
        for img in images:
            pipeline(image=img)
    names = {p.rsplit("/", 1)[-1] for p in read}
    assert names == train_names  # every train photo, and nothing else
    assert names.isdisjoint(eval_names)


def test_strong_trains_through_the_datamodule(cfg_factory, tmp_path):
    """The pipeline as the training split's transform: uint8 CHW batches of the configured size."""
    import torch

    from shapeshift.data.datamodule import ShapesDataModule

    dm = ShapesDataModule(
        image_size=32,
        n_train_per_class=16,
        n_val_per_class=4,
        n_test_per_class=4,
        batch_size=8,
        cache_dir=str(tmp_path),
        train_transform=strong_pipeline(cfg_factory, 0, "data.image_size=32"),
    )
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8 and y.shape == (8,)


def quadrants(images: np.ndarray) -> np.ndarray:
    """The quadrant of each image's darkest blob (0 TL, 1 TR, 2 BL, 3 BR), from its darkest 2% of pixels
    (a shape covers more than that; brightness changes move absolute greys, not the order)."""
    grey = images.mean(axis=3)
    dark = grey <= np.percentile(grey, 2, axis=(1, 2))[:, None, None]
    ys, xs = np.indices(dark.shape[1:])
    cy = (dark * ys).sum((1, 2)) / dark.sum((1, 2))
    cx = (dark * xs).sum((1, 2)) / dark.sum((1, 2))
    half = images.shape[1] / 2
    return (cy >= half).astype(int) * 2 + (cx >= half).astype(int)


@pytest.mark.parametrize("aug", ["flip", "translate", "basic_flip", "basic_translate"])
def test_flip_and_translate_keep_labels_and_move_shapes_across_quadrants(aug, cfg_factory):
    params = sample_params(60, 64, np.random.default_rng(0))
    images, _ = render(params, 64)
    pipeline = build_augmentation(augmentation_transforms(cfg_factory(f"aug={aug}")), seed=0)
    out = np.stack([pipeline(image=img)["image"] for img in images])
    assert out.shape == images.shape and out.dtype == np.uint8
    before, after = quadrants(images), quadrants(out)
    star = params.label == 0
    assert set(before[star]) == {1, 2} and set(before[~star]) == {0, 3}  # the data's shortcut
    # After augmentation each class turns up in the other class's quadrants: position no longer tells.
    assert set(after[star]) & {0, 3} and set(after[~star]) & {1, 2}
    if aug == "translate":  # a circular shift only moves pixels: the image's histogram is unchanged
        for a, b in zip(images[:10], out[:10], strict=True):
            assert np.array_equal(np.sort(a, axis=None), np.sort(b, axis=None))


def test_flip_draws_each_of_its_four_outcomes():
    """Guards against correlated draws: in a seeded Albumentations 2 Compose two p=0.5 flips always fire
    together, so the preset picks one of four outcomes instead."""
    from collections import Counter

    from tests.helpers import compose_train

    pipeline = build_augmentation(augmentation_transforms(compose_train(["aug=flip"])), seed=0)
    img = np.full((8, 8, 3), 200, np.uint8)
    img[0, 7] = 0  # a dark pixel at the top right
    seen = Counter(tuple(np.argwhere(pipeline(image=img)["image"][..., 0] < 100)[0]) for _ in range(400))
    assert set(seen) == {(0, 7), (0, 0), (7, 7), (7, 0)} and min(seen.values()) > 60


@pytest.mark.parametrize(
    ("aug", "expected"),
    [
        ("basic", {"RandomBrightnessContrast": 0.8, "Affine": 0.8, "RandomResizedCrop": 0.5}),
        (
            "strong",
            {"Affine": 0.9, "RandomResizedCrop": 0.5, "Background": 0.7, "RandomBrightnessContrast": 0.8},
        ),
    ],
)
def test_training_draws_fire_each_transform_at_its_rate_independently(aug, expected, cfg_factory):
    """What a training sample gets, over 2,000 samples: each transform fires at its configured rate and
    independently of the others. A seeded Compose whose transforms each copy one seed fires them together
    (Albumentations 2.0.8); the training set draws them from one per-sample stream instead."""
    from shapeshift.data.base import AugmentedDataset

    pipeline = build_augmentation(augmentation_transforms(cfg_factory(f"aug={aug}")), seed=0)
    pipeline.save_applied_params = True
    fired = []

    class Spy:  # the dataset's pipeline, recording what it applied to each sample
        def set_random_state(self, *generators):
            pipeline.set_random_state(*generators)

        def __call__(self, **data):
            out = pipeline(**data)
            applied = [name for name, _ in out["applied_transforms"]]
            names = {n.removeprefix("RandomPattern").removeprefix("RandomPhoto") for n in applied}
            fired.append([name in names for name in expected])
            return out

    params = sample_params(8, 64, np.random.default_rng(0))
    images, _ = render(params, 64)
    ds = AugmentedDataset(np.repeat(images, 250, axis=0), np.repeat(params.label, 250), Spy(), seed=0)
    for i in range(len(ds)):
        ds[(0, i)]
    fired = np.array(fired, float)
    assert np.allclose(fired.mean(0), list(expected.values()), atol=0.035), fired.mean(0)
    corr = np.corrcoef(fired.T)[np.triu_indices(len(expected), 1)]
    assert np.abs(corr).max() < 0.08, corr


def test_a_pipeline_called_directly_draws_its_transforms_independently():
    """Two p=0.5 flips consume the same numbers, so transforms that each copy one seed (a seeded
    Albumentations 2.0.8 Compose) flip both or neither, forever. A direct call (a preview, a notebook) must
    draw them from one stream, as training does."""
    pipeline = build_augmentation([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)], seed=0)
    img = np.zeros((4, 4, 3), np.uint8)
    img[0, 3] = 255  # top right
    corners = Counter(tuple(np.argwhere(pipeline(image=img)["image"][..., 0])[0]) for _ in range(400))
    assert set(corners) == {(0, 3), (0, 0), (3, 3), (3, 0)} and min(corners.values()) > 70, corners
