import numpy as np
import pytest

from shapeshift.data.render import (
    CLASSES,
    MOON,
    QUADRANTS,
    STAR,
    TRAIN_QUADRANTS,
    render,
    sample_params,
)

SIZE = 64


def centroid_quadrant(mask: np.ndarray) -> int:
    ys, xs = np.nonzero(mask > 0.5)
    row, col = int(ys.mean() >= SIZE / 2), int(xs.mean() >= SIZE / 2)
    return QUADRANTS.index((row, col))


@pytest.fixture(scope="module")
def sample():
    params = sample_params(50, SIZE, np.random.default_rng(0))
    images, masks = render(params, SIZE)
    return params, images, masks


def test_balanced_classes_and_rgb_uint8(sample):
    params, images, _ = sample
    assert images.shape == (100, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert np.bincount(params.label).tolist() == [50, 50]
    assert len(CLASSES) == 2


def test_every_shape_sits_in_a_trained_quadrant_of_its_class(sample):
    params, _, masks = sample
    for label, mask in zip(params.label, masks, strict=True):
        assert centroid_quadrant(mask) in TRAIN_QUADRANTS[int(label)]
    # Both quadrants of each class occur.
    for label in (STAR, MOON):
        seen = {centroid_quadrant(m) for m, lab in zip(masks, params.label, strict=True) if lab == label}
        assert seen == set(TRAIN_QUADRANTS[label])


def test_dark_shape_on_light_background(sample):
    params, images, masks = sample
    for img, mask, fg, bg in zip(images, masks, params.fg, params.bg, strict=True):
        assert abs(int(img[mask == 1.0].mean()) - int(fg)) <= 1
        assert abs(int(img[mask == 0.0].mean()) - int(bg)) <= 1
        assert int(bg) - int(fg) >= 120


def test_stars_and_moons_differ_in_shape(sample):
    """A star's mass is centred on its centre; a crescent's lies on the side away from its horns."""
    params, _, masks = sample
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    area = masks.sum(axis=(1, 2))
    mx, my = (masks * xx).sum(axis=(1, 2)) / area, (masks * yy).sum(axis=(1, 2)) / area
    offset = np.hypot(mx - params.cx, my - params.cy) / params.radius
    assert offset[params.label == STAR].max() < 0.05
    assert offset[params.label == MOON].min() > 0.25
    # Horns open to the right (angle 0 +- jitter): the crescent's mass sits left of its disc centre.
    assert (mx - params.cx)[params.label == MOON].max() < 0


def test_same_seed_same_bytes_other_seed_other_bytes():
    a, _ = render(sample_params(10, SIZE, np.random.default_rng(7)), SIZE)
    b, _ = render(sample_params(10, SIZE, np.random.default_rng(7)), SIZE)
    c, _ = render(sample_params(10, SIZE, np.random.default_rng(8)), SIZE)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
