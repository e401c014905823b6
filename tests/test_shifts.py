"""The o.o.d. catalog, measured on rendered masks and images, not on its parameters."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from shapeshift.data import shifts
from shapeshift.data.backgrounds import SHIPPED_PHOTOS, load_photos, photo_names
from shapeshift.data.render import MOON, QUADRANTS, TRAIN_QUADRANTS, render, sample_params
from shapeshift.train import train
from tests.helpers import CONF, assert_metrics_consistent

SIZE = 64
CATALOG = OmegaConf.to_container(OmegaConf.load(CONF / "shift" / "default.yaml"), resolve=True)
FAMILIES = CATALOG["families"]
SEED_FAMILIES = [
    "position",
    "scale",
    "shear",
    "rotation",
    "background_pattern",
    "background_photo",
    "combined",
]


@pytest.fixture(scope="module")
def base():
    params = sample_params(30, SIZE, np.random.default_rng(1))
    images, masks = render(params, SIZE)
    return params, images, masks


@pytest.fixture(scope="module")
def photos():
    return load_photos("eval")


def shifted(base, photos, family, k, seed=0):
    params = base[0]
    ops = shifts.severity_ops(FAMILIES, family, k)
    return shifts.apply(params, ops, SIZE, np.random.default_rng(seed), photos)


def quadrant_of(mask):
    ys, xs = np.nonzero(mask > 0.5)
    return QUADRANTS.index((int(ys.mean() >= SIZE / 2), int(xs.mean() >= SIZE / 2)))


def test_catalog_has_the_seed_families_at_five_severities():
    assert set(SEED_FAMILIES) <= set(FAMILIES)
    shifts.validate_catalog(FAMILIES)
    assert all(len(levels) == 5 for levels in FAMILIES.values())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_labels_never_change_and_same_seed_gives_same_bytes(family, base, photos):
    for k in (1, 5):
        a, b = shifted(base, photos, family, k), shifted(base, photos, family, k)
        assert np.array_equal(a.params.label, base[0].label)
        assert a.images.tobytes() == b.images.tobytes()
        assert a.images.dtype == np.uint8 and a.images.shape == base[1].shape


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"position"}))
def test_shape_stays_in_its_trained_quadrant(family, base, photos):
    for k in (1, 5):
        out = shifted(base, photos, family, k)
        for mask, label in zip(out.masks, out.params.label, strict=True):
            assert quadrant_of(mask) in TRAIN_QUADRANTS[int(label)]


def test_position_moves_the_shape_by_the_configured_fraction(base, photos):
    params, _, masks = base
    x0 = np.array([np.nonzero(m > 0.5)[1].mean() for m in masks])
    for k, fraction in enumerate((0.2, 0.4, 0.6, 0.8, 1.0), start=1):
        out = shifted(base, photos, "position", k)
        x = np.array([np.nonzero(m > 0.5)[1].mean() for m in out.masks])
        assert np.allclose(np.abs(x - x0), fraction * SIZE / 2, atol=0.75)
    for mask, label in zip(out.masks, out.params.label, strict=True):
        assert quadrant_of(mask) not in TRAIN_QUADRANTS[int(label)]


def test_scale_changes_the_mask_area_by_the_factor_squared(base, photos):
    params, _, masks = base
    area0 = masks.sum(axis=(1, 2))
    room = np.minimum.reduce([params.cx, params.cy, SIZE - params.cx, SIZE - params.cy])
    for k, factor in enumerate((1.15, 1.3, 1.5, 1.75, 2.0), start=1):
        ratio = shifted(base, photos, "scale", k).masks.sum(axis=(1, 2)) / area0
        # Each image is enlarged by k or shrunk by 1/k; both occur. Skip shapes enlarged past the border.
        inside = factor * params.radius + 1 <= room
        up, down = np.abs(ratio - factor**2) / factor**2, np.abs(ratio - factor**-2) / factor**-2
        assert np.all(np.minimum(up, down)[inside | (down < up)] < 0.12), (k, ratio)
        assert (up < down).any() and (down < up).any()


def crescent_direction(mask, params, i):
    """Angle (degrees) from a moon's disc centre to its mass centre: turns with the shape."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    w = mask / mask.sum()
    return np.degrees(np.arctan2((w * ys).sum() - params.cy[i], (w * xs).sum() - params.cx[i]))


def test_rotation_turns_moons_by_the_configured_angle(base, photos):
    params, _, masks = base
    moons = np.flatnonzero(params.label == MOON)
    for k, degrees in enumerate((15, 30, 60, 90, 180), start=1):
        out = shifted(base, photos, "rotation", k)
        for i in moons:
            turn = crescent_direction(out.masks[i], params, i) - crescent_direction(masks[i], params, i)
            turn = (turn + 180) % 360 - 180
            assert abs(abs(turn) - degrees) < 6 or (degrees == 180 and abs(abs(turn) - 180) < 6), (k, turn)


def test_shear_skews_the_mask_as_configured(base, photos):
    """Horizontal shear by t degrees adds tan(t) * var(y) to the mask's x-y covariance."""
    params, _, masks = base
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5

    def cov_xy_var_y(m):
        w = m / m.sum()
        mx, my = (w * xs).sum(), (w * ys).sum()
        return (w * (xs - mx) * (ys - my)).sum(), (w * (ys - my) ** 2).sum()

    for k, degrees in enumerate((10, 20, 30, 40, 50), start=1):
        out = shifted(base, photos, "shear", k)
        for i in range(0, len(params), 7):
            c0, _ = cov_xy_var_y(masks[i])
            c1, vy = cov_xy_var_y(out.masks[i])
            assert (
                abs(abs(c1 - c0) - np.tan(np.radians(degrees)) * vy)
                < 0.15 * np.tan(np.radians(degrees)) * vy + 0.3
            )


@pytest.mark.parametrize("family", ["background_pattern", "background_photo"])
def test_backgrounds_keep_the_shape_pixels_and_change_the_rest(family, base, photos):
    params, images, masks = base
    for k in range(1, 6):
        out = shifted(base, photos, family, k)
        inside, outside = masks == 1.0, masks == 0.0
        assert np.array_equal(out.images[inside], images[inside])
        assert np.array_equal(out.masks, masks)
        changed = (out.images != images).any(axis=-1)[outside].mean()
        assert changed > 0.5, (family, k, changed)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"position"}))  # position: measured above
def test_severity_is_monotonic_in_its_measured_effect(family, base, photos):
    """Mean absolute change from the i.i.d. image grows with severity (moons: stars repeat every 72 deg)."""
    params, images, _ = base
    moons = params.label == MOON
    effect = [
        np.abs(shifted(base, photos, family, k).images[moons].astype(int) - images[moons]).mean()
        for k in range(1, 6)
    ]
    assert all(a < b for a, b in zip(effect, effect[1:], strict=False)), effect


def test_evaluation_photos_are_a_fixed_split_with_licences():
    assert photo_names("eval") == ["china", "coffee", "rocket"]
    assert not set(photo_names("eval")) & set(photo_names("train"))
    assert all(p.licence for p in SHIPPED_PHOTOS)


def test_bad_severity_and_unknown_family_fail_clearly():
    with pytest.raises(shifts.ShiftError, match=r"severity 6 is outside 1..5"):
        shifts.severity_ops(FAMILIES, "scale", 6)
    with pytest.raises(
        shifts.ShiftError, match=r"unknown shift family 'zoom'; choose from \['background_pattern'"
    ):
        shifts.select(FAMILIES, ["zoom"])
    with pytest.raises(shifts.ShiftError, match="unknown operation 'warp'"):
        shifts.validate_catalog({"x": [{"warp": {}}] * 5})
    with pytest.raises(
        shifts.ShiftError, match=r"affine takes \['rotate', 'scale', 'shear'\], not \['zoom'\]"
    ):
        shifts.validate_catalog({"x": [{"affine": {"zoom": 2}}] * 5})


def test_a_family_added_in_yaml_is_evaluated_with_no_code_change(cfg_factory, tmp_path):
    (tmp_path / "conf" / "shift").mkdir(parents=True)
    (tmp_path / "conf" / "shift" / "mine.yaml").write_text(
        "defaults: [default]\nfamilies:\n  squash:\n"
        + "".join(f"    - {{affine: {{scale: {s}, shear: {s * 10}}}}}\n" for s in (1.1, 1.2, 1.3, 1.4, 1.5))
    )
    cfg = cfg_factory(
        "debug=smoke", "logger=none", "shift=mine", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    )
    metrics = train(cfg)
    assert_metrics_consistent(metrics, {f"squash/s{k}": 16 for k in range(1, 6)})
    assert "test/squash/acc" in metrics and "test/rotation/acc" in metrics


def test_the_sub_stride_catalog_moves_shapes_by_whole_pixels(base, photos):
    """conf/shift/substride.yaml: 35 sets, the k-th moving every shape by k px at 64 px (32: the swap)."""
    sub = OmegaConf.to_container(OmegaConf.load(CONF / "shift" / "substride.yaml"), resolve=True)["families"]
    shifts.validate_catalog(sub)
    x0 = np.array([np.nonzero(m > 0.5)[1].mean() for m in base[2]])
    for k in (1, 7, 31, 32):
        first = 5 * ((k - 1) // 5) + 1
        ops = shifts.severity_ops(sub, f"px{first:02d}_{first + 4:02d}", k - first + 1)
        out = shifts.apply(base[0], ops, SIZE, np.random.default_rng(0))
        x = np.array([np.nonzero(m > 0.5)[1].mean() for m in out.masks])
        assert np.allclose(np.abs(x - x0), k, atol=0.5), (k, np.abs(x - x0).max())
