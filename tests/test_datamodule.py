import numpy as np
import pytest
import torch

from shapeshift.data import datamodule as dm_module
from shapeshift.data.augment import build_augmentation
from shapeshift.data.datamodule import ShapesDataModule
from shapeshift.data.render import OPPOSITE_QUADRANT, QUADRANTS, TRAIN_QUADRANTS

POSITION = {
    "families": {"position": [{"position": {"fraction": f}} for f in (0.2, 0.4, 0.6, 0.8, 1.0)]},
    "n_per_class": 10,
    "mix_n_per_class": 0,
}


def make(cache_dir, **kw):
    args = dict(
        image_size=32,
        n_train_per_class=40,
        n_val_per_class=10,
        n_test_per_class=20,
        batch_size=16,
        eval_batch_size=64,
        cache_dir=str(cache_dir),
        shift=POSITION,
    )
    args.update(kw)
    return ShapesDataModule(**args)


def dark_centroid_quadrant(img: np.ndarray) -> int:
    ys, xs = np.nonzero(img[..., 0] < 128)
    s = img.shape[0]
    return QUADRANTS.index((int(ys.mean() >= s / 2), int(xs.mean() >= s / 2)))


def test_splits_sizes_and_batches(tmp_path):
    dm = make(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_set) == 80 and len(dm.val_set) == 20
    assert dm.test_set_names == ["iid"] + [f"position/s{k}" for k in range(1, 6)]
    assert len(dm.test_set) == 40 + 5 * 20
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= -1.0 and x.max() <= 1.0
    batches = list(dm.test_dataloader())
    assert all(x.dtype == torch.uint8 for x, _, _ in batches)
    set_index = torch.cat([s for _, _, s in batches])
    assert torch.bincount(set_index).tolist() == [40, 20, 20, 20, 20, 20]


def test_splits_differ_and_iid_is_the_test_split(tmp_path):
    dm = make(tmp_path)
    train, val, test = (dm.arrays(n)[0] for n in ("train", "val", "test"))
    assert not np.array_equal(train[:10], val[:10]) and not np.array_equal(val[:10], test[:10])
    assert np.array_equal(dm.arrays("iid")[0], test)


def test_position_s5_is_the_opposite_quadrant_set(tmp_path):
    dm = make(tmp_path)
    images, labels = dm.arrays("position/s5")
    assert np.bincount(labels).tolist() == [10, 10]
    for img, label in zip(images, labels, strict=True):
        q = dark_centroid_quadrant(img)
        assert q not in TRAIN_QUADRANTS[int(label)]
        assert OPPOSITE_QUADRANT[q] in TRAIN_QUADRANTS[int(label)]


def test_second_datamodule_reads_the_cache_and_gets_identical_bytes(tmp_path, monkeypatch):
    first = make(tmp_path)
    first.prepare_data()
    calls = []
    real = dm_module.render
    monkeypatch.setattr(dm_module, "render", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = make(tmp_path)
    for name in ["train", "val", *second.test_set_names]:
        assert second.arrays(name)[0].tobytes() == first.arrays(name)[0].tobytes()
    assert calls == []
    # A different data seed is a different cache entry, rendered afresh.
    make(tmp_path, seed=1).arrays("val")
    assert calls == [1]


def test_augmentation_applies_to_training_only(tmp_path):
    transforms = [{"_target_": "albumentations.Affine", "rotate": [90, 90], "border_mode": 1, "p": 1.0}]
    dm = make(tmp_path, train_transform=build_augmentation(transforms, seed=0))
    dm.setup(None)
    train_images, _ = dm.arrays("train")
    augmented = dm.train_set[0][0].permute(1, 2, 0).numpy()
    assert augmented.dtype == np.uint8 and augmented.shape == train_images[0].shape
    assert not np.array_equal(augmented, train_images[0])
    val_images, _ = dm.arrays("val")
    assert np.array_equal(dm.val_set[0][0].permute(1, 2, 0).numpy(), val_images[0])


def test_no_augmentation_builds_nothing():
    assert build_augmentation([], seed=0) is None


def test_corrupted_cache_file_is_rendered_again(tmp_path):
    dm = make(tmp_path)
    good = dm.arrays("val")[0].copy()
    (path,) = [p for p in tmp_path.iterdir() if p.name.startswith("val-")]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert np.array_equal(make(tmp_path).arrays("val")[0], good)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_shift_catalog_is_validated(tmp_path, fraction):
    bad = {"families": {"position": [{"position": {"fraction": fraction}}] * 4}}
    with pytest.raises(ValueError, match="needs 5"):
        make(tmp_path, shift=bad)
