"""Quality control: calibration, o.o.d. detection, shift consistency, re-evaluation and the audit."""

import csv
import math

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shapeshift.audit import audit, summary
from shapeshift.data.render import render, sample_params
from shapeshift.evaluate import evaluate_run
from shapeshift.models.classifier import Classifier
from shapeshift.restore import RunError
from shapeshift.run_dir import find_runs, read_metrics
from shapeshift.train import train
from tests.helpers import CONF, assert_metrics_consistent


def logits_for(confidence: float, predicted: np.ndarray) -> torch.Tensor:
    """Two-class logits whose softmax gives `confidence` to the `predicted` class."""
    z = torch.zeros(len(predicted), 2)
    z[torch.arange(len(predicted)), torch.as_tensor(predicted)] = math.log(confidence / (1 - confidence))
    return z


def run_test_loop(sets: dict) -> dict:
    """Run Lightning's test loop on a model whose 'images' are its logits."""
    names = list(sets)
    x = torch.cat([sets[n][0] for n in names])
    y = torch.cat([sets[n][1] for n in names])
    s = torch.cat([torch.full((len(sets[n][1]),), i) for i, n in enumerate(names)])
    model = Classifier(nn.Identity(), num_classes=2, test_set_names=names, consistency_shift=0)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, DataLoader(TensorDataset(x, y, s), batch_size=7), verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_ece_and_auroc_on_hand_made_logits():
    y = torch.tensor([0, 1] * 50)
    right = y.numpy()
    half_wrong = np.where(np.arange(100) < 50, right, 1 - right)  # 50% accurate
    ten_wrong = np.where(np.arange(100) < 90, right, 1 - right)  # 90% accurate
    m = run_test_loop({
        "iid": (logits_for(0.9, ten_wrong), y),              # confidence 0.9, accuracy 0.9: calibrated
        "over": (logits_for(0.9, half_wrong), y),            # confidence 0.9, accuracy 0.5: ECE 0.4
        "humble": (logits_for(0.6, half_wrong), y),          # less confident than every i.i.d. image
    })
    assert m["test/iid/acc"] == pytest.approx(0.9)
    assert m["test/iid/ece"] == pytest.approx(0.0, abs=1e-5)
    assert m["test/over/ece"] == pytest.approx(0.4, abs=1e-5)
    assert m["test/humble/ece"] == pytest.approx(0.1, abs=1e-5)
    assert m["test/over/auroc"] == pytest.approx(0.5)       # same confidence: cannot tell the sets apart
    assert m["test/humble/auroc"] == pytest.approx(1.0)     # lower confidence on every o.o.d. image
    assert "test/iid/auroc" not in m


class DarkestValue(nn.Module):
    """Looks only at how dark the darkest pixel is: blind to position."""

    def forward(self, x):
        v = x.amin(dim=(1, 2, 3))
        return torch.stack([v, -v - 0.5], dim=1)


class ColumnParity(nn.Module):
    """Predicts from the parity of the dark shape's column: every 1-px shift can flip it."""

    def forward(self, x):
        dark = (x[:, 0] < 0).float()
        cols = torch.arange(x.shape[-1], dtype=torch.float32)
        cx = (dark.sum(1) * cols).sum(1) / dark.sum((1, 2)).clamp(min=1)
        odd = (cx.round() % 2).float()
        return torch.stack([odd, 1 - odd], dim=1)


@pytest.mark.parametrize(("backbone", "expect_one"), [(DarkestValue(), True), (ColumnParity(), False)])
def test_shift_consistency(backbone, expect_one):
    images, _ = render(sample_params(40, 64, np.random.default_rng(0)), 64)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    y = torch.zeros(len(x), dtype=torch.long)
    model = Classifier(backbone, num_classes=2, test_set_names=["iid"], consistency_shift=4)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, DataLoader(TensorDataset(x, y, torch.zeros_like(y)), batch_size=32), verbose=False)
    consistency = float(trainer.callback_metrics["test/consistency"])
    if expect_one:
        assert consistency == 1.0
    else:
        assert consistency < 0.75


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cache_dir):
    from tests.helpers import make_cfg, save_job_config

    run_dir = tmp_path_factory.mktemp("qc") / "run"
    cfg = make_cfg(["debug=smoke", "logger=none", "arch=cnn", "trainer.max_epochs=2"], run_dir, cache_dir)
    train(cfg)
    save_job_config(cfg, run_dir)
    return run_dir


def today_catalog(**extra_families):
    shift = OmegaConf.load(CONF / "shift" / "default.yaml")
    for name, levels in extra_families.items():
        shift.families[name] = levels
    return shift


def test_every_set_gets_calibration_and_detection_metrics(trained_run):
    m = read_metrics(trained_run)
    for key in ("test/iid/ece", "test/mix/auroc", "test/consistency"):
        assert 0.0 <= m[key] <= 1.0, key  # bounded by definition; no closed form on a trained model
    assert_metrics_consistent(m, {"iid": 32, "rotation/s3": 16, "mix": 32})  # ece and auroc means too
    assert {"test/rotation/s3/ece", "test/rotation/s3/auroc", "test/ood/ece", "test/ood/auroc"} <= set(m)


def test_evaluate_reproduces_the_runs_own_test_metrics(trained_run):
    trained = read_metrics(trained_run)
    again = evaluate_run(trained_run, today_catalog(), families=None)
    assert (trained_run / "evaluation.json").is_file()
    assert read_metrics(trained_run) == trained  # metrics.json untouched
    tested = {k: v for k, v in trained.items() if k.startswith("test/")}
    assert {k: again[k] for k in tested} == tested


def test_evaluate_picks_up_a_family_added_after_training(trained_run):
    squash = [{"affine": {"scale": 1.0 + s / 10, "shear": 5 * s}} for s in range(1, 6)]
    m = evaluate_run(trained_run, today_catalog(squash=squash), families=["squash"], out="eval-squash.json")
    assert m["families"] == ["squash"]
    assert_metrics_consistent(m, {f"squash/s{k}": 16 for k in range(1, 6)})
    assert "test/rotation/acc" not in m
    assert "test/squash/s1/acc" in read_metrics(trained_run, "eval-squash.json")


def test_evaluate_finds_every_run_of_a_sweep(trained_run):
    assert find_runs(trained_run.parent) == [trained_run]
    assert find_runs(trained_run) == [trained_run]


def test_missing_or_corrupt_checkpoint_is_one_clear_line(trained_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    ckpt = broken / read_metrics(broken)["checkpoint"]
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(RunError, match=r"checkpoint .* is unreadable") as err:
        evaluate_run(broken, today_catalog(), ["rotation"])
    assert "\n" not in str(err.value)
    ckpt.unlink()
    with pytest.raises(RunError, match=r"^no checkpoint at "):
        evaluate_run(broken, today_catalog(), ["rotation"])
    with pytest.raises(Exception, match="overwrite the training results"):
        evaluate_run(trained_run, today_catalog(), None, out="metrics.json")


def test_audit_a_folder_of_mixed_files(trained_run, tmp_path):
    folder = tmp_path / "deployment"
    folder.mkdir()
    images, _ = render(sample_params(3, 64, np.random.default_rng(3)), 64)
    for i, img in enumerate(images[:4]):
        Image.fromarray(img).resize((150, 150)).save(folder / f"good_{i}.png")
    Image.fromarray(images[4]).save(folder / "scan.jpg")
    jpeg = (folder / "scan.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "notes.txt").write_text("not an image")
    Image.fromarray(np.dstack([images[5], np.full((64, 64), 200, np.uint8)]), "RGBA").save(folder / "alpha.png")
    Image.fromarray(images[0][..., 0]).save(folder / "grey.png")
    before = sorted(p.name for p in folder.iterdir())

    result = audit(str(trained_run), str(folder))
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written into the image folder
    rows = list(csv.DictReader((result["out"] / "audit.csv").read_text().splitlines()))
    assert [r["file"] for r in rows] == ["alpha.png", "good_0.png", "good_1.png", "good_2.png", "good_3.png",
                                         "grey.png", "scan.jpg"]
    for r in rows:
        assert r["predicted_class"] in ("star", "moon") and 0.5 <= float(r["confidence"]) <= 1.0
        assert r["ood_flag"] == str(int(float(r["confidence"]) < result["threshold"]))
    skipped = dict(result["skipped"])
    assert set(skipped) == {"truncated.jpg", "notes.txt"}
    assert skipped["notes.txt"] == "not an image file" and "unreadable" in skipped["truncated.jpg"]
    assert (result["out"] / "contact_sheet.png").stat().st_size > 1000
    text = summary(result)
    assert "audited 7 images (2 skipped)" in text and "keeps 95%" in text


def test_audit_warns_when_far_more_images_are_flagged_than_iid(trained_run):
    result = {"out": "x", "n": 10, "skipped": [], "flagged": 0.6, "threshold": 0.9, "iid_flagged": 0.05,
              "keep": 0.95, "classes": {"star": 5, "moon": 5}}
    assert "WARNING" in summary(result)
    assert "WARNING" not in summary({**result, "flagged": 0.06})
