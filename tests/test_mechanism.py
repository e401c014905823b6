"""The knobs for asking why a network learns the quadrant: padding, odd input sizes, local weights, flips
and translations as augmentation, and saliency maps."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from shapeshift.config import PADDING_MODES, ConfigError, validate
from shapeshift.data.augment import build_augmentation
from shapeshift.data.render import render, sample_params
from shapeshift.pipeline import augmentation_transforms, build_backbone
from tests.helpers import ARCHS


def padded_convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_padding_mode_reaches_every_padded_convolution(arch, mode, cfg_factory):
    cfg = cfg_factory(f"arch={arch}", f"arch.padding_mode={mode}", "data.image_size=40")
    net = build_backbone(cfg, arch)  # runs a forward pass: every mode works at this size
    convs = padded_convs(net)
    assert convs and all(c.padding_mode == mode for c in convs), [c.padding_mode for c in convs]


def test_padding_changes_what_the_network_computes(cfg_factory):
    x = torch.zeros(1, 3, 32, 32)
    x[..., :8, 24:] = 1.0  # a bright patch at the top-right border
    outs = {}
    for mode in ("zeros", "circular"):
        torch.manual_seed(0)
        outs[mode] = build_backbone(cfg_factory("arch=cnn", f"arch.padding_mode={mode}", "data.image_size=32"),
                                    "cnn").eval()(x)
    assert not torch.allclose(outs["zeros"], outs["circular"])  # same weights, another border


def test_an_unknown_padding_mode_fails_at_validation(cfg_factory):
    with pytest.raises(ConfigError, match="arch.padding_mode must be one of zeros, reflect"):
        validate(cfg_factory("arch=cnn", "arch.padding_mode=mirror"))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [63, 65])
def test_odd_input_sizes(arch, size, cfg_factory):
    cfg = cfg_factory(f"arch={arch}", f"data.image_size={size}")
    out = build_backbone(cfg, arch).eval()(torch.zeros(2, 3, size, size))
    assert out.shape == (2, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ["resnet18", "resnet18_aa"])
def test_local_weights_are_loaded_and_a_mismatched_head_is_kept(arch, cfg_factory, tmp_path):
    donor = instantiate(cfg_factory(f"arch={arch}", "data.num_classes=10").arch)  # a 10-class head
    path = tmp_path / "weights.pt"
    torch.save(donor.state_dict(), path)
    fresh = instantiate(cfg_factory(f"arch={arch}").arch)
    net = instantiate(cfg_factory(f"arch={arch}", f"arch.weights={path}").arch)
    assert torch.equal(net.conv1.weight, donor.conv1.weight)  # every matching tensor copied
    assert torch.equal(net.layer4[1].bn2.running_mean, donor.layer4[1].bn2.running_mean)
    assert net.fc.weight.shape == (2, 512) and not torch.equal(net.fc.weight, fresh.fc.weight[:0])
    torch.save({"state_dict": donor.state_dict()}, tmp_path / "ckpt.pt")  # a checkpoint-style file too
    again = instantiate(cfg_factory(f"arch={arch}", f"arch.weights={tmp_path / 'ckpt.pt'}").arch)
    assert torch.equal(again.conv1.weight, donor.conv1.weight)
    with pytest.raises(Exception, match="no such file"):
        instantiate(cfg_factory(f"arch={arch}", f"arch.weights={tmp_path / 'missing.pt'}").arch)


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


def test_saliency_maps_have_the_image_size_and_are_not_constant(cfg_factory, tmp_path):
    from shapeshift.explain import explain
    from shapeshift.saliency import explain_sets
    from shapeshift.train import train
    from tests.helpers import save_job_config

    run_dir = tmp_path / "run"
    cfg = cfg_factory("debug=smoke", "logger=none", "arch=cnn", "trainer.max_epochs=2", output_dir=run_dir)
    train(cfg)
    save_job_config(cfg, run_dir)
    path = explain(str(run_dir), ["iid", "position/s5"], n=4)
    assert path == run_dir / "saliency.png" and path.read_bytes()[:4] == b"\x89PNG"

    from shapeshift.pipeline import build_datamodule
    from shapeshift.restore import load_model, load_run_config

    cfg = load_run_config(run_dir)
    dm = build_datamodule(cfg, augment=False)
    rows = explain_sets(load_model(run_dir, cfg, dm.test_set_names), dm, ["iid", "position/s5"], 4)
    for row in rows:
        assert row["maps"].shape == (4, 64, 64)
        assert all(m.std() > 1e-3 for m in row["maps"]) and row["maps"].min() >= 0 and row["maps"].max() <= 1
        assert sorted(row["labels"].tolist()) == [0, 0, 1, 1]  # classes in turn


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


@pytest.mark.parametrize(("preset", "jobs", "grid"), [
    ("mechanism", 18, {"arch": {"resnet18", "cnn"}, "arch.padding_mode": {"zeros", "reflect", "circular"}}),
    ("mechanism_size", 18, {"arch": {"resnet18", "resnet18_aa"}, "data.image_size": {"63", "64", "65"}}),
    ("remedy", 45, {"aug": {"none", "flip", "translate"}}),
])
def test_the_experiment_presets_expand_to_their_jobs(preset, jobs, grid):
    from tests.helpers import compose_train
    from tests.test_seed_study import sweep_jobs

    expanded = sweep_jobs([f"experiment={preset}"])
    assert len(expanded) == jobs
    for key, values in grid.items():
        assert {dict(o.split("=", 1) for o in job)[key] for job in expanded} == values
    for job in expanded[:: max(1, jobs // 6)]:  # every kind of job composes and validates
        validate(compose_train([f"experiment={preset}", *job]))
