"""The drift test (qc/drift.py): the unbiased MMD² against its direct formula, a calibrated permutation
p-value under the null, its false-alarm rate on fresh i.i.d. star/moon samples in a trained run's feature
space, its power on the swapped quadrants, and the audit that reports it."""

import json

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from PIL import Image

from shapeshift.audit import audit, summary
from shapeshift.audit.drift import DRIFT_FILE, catalog_features
from shapeshift.audit.screen import load
from shapeshift.engine.pipeline import build_datamodule
from shapeshift.engine.restore import load_run_config
from shapeshift.qc.drift import (
    LEVEL,
    Features,
    _kernel,
    _mmd2,
    drift_test,
    image_features,
    mmd_test,
    nearest_sets,
)


def gaussians(seed: int, n: int = 30, m: int = 60, d: int = 8, shift: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + shift, torch.randn(m, d, generator=g)


def test_mmd2_is_the_unbiased_estimate():
    x, y = gaussians(1, 7, 9, 3, shift=0.5)
    k = _kernel(x, y, 1.3)
    kxx, kyy, kxy = k[:7, :7], k[7:, 7:], k[:7, 7:]
    direct = (kxx.sum() - kxx.trace()) / 42 + (kyy.sum() - kyy.trace()) / 72 - 2 * kxy.mean()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :7] = True
    mask[1, 9:] = True  # another split: the statistic of the last 7 against the first 9
    flipped = _kernel(torch.cat([x, y])[9:], torch.cat([x, y])[:9], 1.3)
    kxx2, kyy2, kxy2 = flipped[:7, :7], flipped[7:, 7:], flipped[:7, 7:]
    other = (kxx2.sum() - kxx2.trace()) / 42 + (kyy2.sum() - kyy2.trace()) / 72 - 2 * kxy2.mean()
    assert _mmd2(k, mask).tolist() == pytest.approx([float(direct), float(other)], abs=1e-12)


def test_the_permutation_p_value_is_calibrated_under_the_null():
    p = np.array([mmd_test(*gaussians(s), permutations=200, seed=s, ladder=False).p for s in range(300)])
    for level in (0.05, 0.2, 0.5):  # uniform: P(p <= a) = a, within about 2.5 binomial sd at n = 300
        assert abs((p <= level).mean() - level) < 2.5 * np.sqrt(level * (1 - level) / 300) + 1 / 200


def test_a_shift_is_found_and_the_images_it_took_are_counted():
    x, y = gaussians(0, n=200, m=400, shift=0.5)
    result = mmd_test(x, y)
    assert result.drifted and result.p == pytest.approx(1 / 501) and result.effect > 10
    assert result.needed in (25, 50, 100, 200)
    assert mmd_test(x[:25], y, ladder=False).p > LEVEL or result.needed == 25
    assert "different from the validation images" in result.describe()


def test_nearest_sets_rank_by_distance():
    g = torch.Generator().manual_seed(0)
    classes = torch.zeros(100, dtype=torch.long)

    def sample(shift: float) -> Features:
        return Features(torch.randn(100, 4, generator=g) + shift, classes)

    catalog = {f"s{k}": sample(k / 2) for k in range(5)}
    ranked = nearest_sets(sample(1.0), catalog, sample(0.0), top=3)
    assert [name for name, _ in ranked][0] == "s2" and len(ranked) == 3
    assert [d for _, d in ranked] == sorted(d for _, d in ranked)


def fresh_iid(run_dir, seed: int, n_per_class: int = 100) -> np.ndarray:
    """A new i.i.d. sample: the run's own data recipe under another data seed, its test split."""
    cfg = load_run_config(run_dir)
    with open_dict(cfg):
        cfg.data.seed = 1000 + seed
        cfg.data.n_test_per_class = n_per_class
        cfg.shift.families = {}
    return np.asarray(build_datamodule(cfg, augment=False).arrays("test")[0])


def test_no_false_alarms_on_fresh_iid_samples_and_the_swap_is_found(trained_run):
    _, datamodule, model = load(trained_run)
    val = image_features(model, datamodule.arrays("val")[0])
    tests = [drift_test(image_features(model, fresh_iid(trained_run, s)), val, seed=s) for s in range(20)]
    alarms = sum(t.drifted for t in tests)
    # At most the level on average; over 20 seeds, 4 or more alarms has probability 0.016 if it holds.
    assert alarms <= 3, [round(t.p, 3) for t in tests]
    photo = drift_test(catalog_features(trained_run, model)["background_photo/s5"], val)
    assert photo.drifted and photo.needed <= photo.n


def test_the_audit_reports_drift_and_the_closest_sets(trained_run, tmp_path):
    folder = tmp_path / "photos"
    _, _, model = load(trained_run)
    cfg = load_run_config(trained_run)
    with open_dict(cfg):
        cfg.shift.n_per_class = 40
    dm = build_datamodule(cfg, augment=False)
    images = dm.arrays("background_photo/s5")[0]
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    result = audit(str(trained_run), str(folder))
    assert result["drift"].drifted and result["drift"].n == len(images)
    names = [name for name, _ in result["nearest"]]
    assert len(names) == 3 and names[0].startswith("background_photo/")
    saved = json.loads((result["out"] / DRIFT_FILE).read_text())
    assert saved["test"]["drifted"] and saved["nearest"][0]["set"] == names[0]
    text = summary(result)
    assert "drift: different from the validation images" in text and f"`{names[0]}`" in text
    assert audit(str(trained_run), str(folder), drift=False)["drift"] is None
