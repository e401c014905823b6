"""Quality control: calibration, o.o.d. detection, shift consistency, re-evaluation and the audit."""

import csv
import math
import shutil

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from sklearn.datasets import load_sample_image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shapeshift.audit import audit, rank_sweep, summary
from shapeshift.config import DETECTORS
from shapeshift.data.render import render, sample_params
from shapeshift.evaluate import evaluate_run
from shapeshift.models.classifier import Classifier
from shapeshift.qc.bank import DetectorBank
from shapeshift.qc.ranking import wilson
from shapeshift.restore import RunError
from shapeshift.run_dir import find_runs, read_metrics
from shapeshift.train import train
from tests.helpers import CONF, assert_metrics_consistent


def logits_for(confidence: float, predicted: np.ndarray) -> torch.Tensor:
    """Two-class logits whose softmax gives `confidence` to the `predicted` class."""
    z = torch.zeros(len(predicted), 2)
    z[torch.arange(len(predicted)), torch.as_tensor(predicted)] = math.log(confidence / (1 - confidence))
    return z


def run_test_loop(sets: dict, cut: float = math.nan) -> dict:
    """Run Lightning's test loop on a model whose 'images' are its logits, gated by MSP at `cut`."""
    names = list(sets)
    x = torch.cat([sets[n][0] for n in names])
    y = torch.cat([sets[n][1] for n in names])
    s = torch.cat([torch.full((len(sets[n][1]),), i) for i, n in enumerate(names)])
    model = Classifier(nn.Identity(), num_classes=2, test_set_names=names, consistency_shift=0)
    bank = DetectorBank(["msp", "energy"], gate="msp")
    bank.cut = torch.tensor(cut, dtype=torch.float64)
    model.attach_qc(bank)
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
    }, cut=math.log(0.75))                                   # the gate accepts confidence >= 0.75
    assert m["test/iid/acc"] == pytest.approx(0.9)
    assert m["test/iid/ece"] == pytest.approx(0.0, abs=1e-5)
    assert m["test/over/ece"] == pytest.approx(0.4, abs=1e-5)
    assert m["test/humble/ece"] == pytest.approx(0.1, abs=1e-5)
    assert m["test/over/auroc/msp"] == pytest.approx(0.5)   # same confidence: cannot tell the sets apart
    assert m["test/over/fpr95/msp"] == pytest.approx(1.0)
    assert m["test/humble/auroc/msp"] == pytest.approx(1.0) # lower confidence on every o.o.d. image
    assert m["test/humble/fpr95/msp"] == pytest.approx(0.0)
    assert m["test/humble/auroc/energy"] == pytest.approx(1.0)
    assert not any(k.startswith("test/iid/auroc") for k in m)
    # The gate (confidence >= 0.75) accepts every i.i.d. and "over" image and no "humble" one.
    assert (m["test/iid/coverage"], m["test/iid/accepted_acc"]) == (1.0, pytest.approx(0.9))
    assert (m["test/over/coverage"], m["test/over/accepted_acc"]) == (1.0, pytest.approx(0.5))
    assert m["test/humble/coverage"] == 0.0 and math.isnan(m["test/humble/accepted_acc"])


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
    for key in ("test/iid/ece", "test/mix/auroc/knn", "test/consistency"):
        assert 0.0 <= m[key] <= 1.0, key  # bounded by definition; no closed form on a trained model
    assert_metrics_consistent(m, {"iid": 32, "rotation/s3": 16, "mix": 32})  # ece, auroc, coverage means too
    for detector in DETECTORS:  # every detector on every o.o.d. set, never on the i.i.d. set itself
        assert {f"test/rotation/s3/auroc/{detector}", f"test/mix/fpr95/{detector}", f"test/ood/auroc/{detector}"} <= set(m)
    assert not any(k.startswith("test/iid/auroc") for k in m)
    # The gate keeps 95% of the i.i.d. validation images; on 32 test images its coverage is a multiple of 1/32.
    assert m["test/iid/coverage"] * 32 == pytest.approx(round(m["test/iid/coverage"] * 32), abs=1e-4)
    assert (trained_run / "qc.pt").is_file() and (trained_run / "risk_coverage.json").is_file()


def test_evaluate_reproduces_the_runs_own_test_metrics(trained_run):
    trained = read_metrics(trained_run)
    again = evaluate_run(trained_run, today_catalog(), families=None)
    assert (trained_run / "evaluation.json").is_file()
    assert read_metrics(trained_run) == trained  # metrics.json untouched
    tested = {k: v for k, v in trained.items() if k.startswith("test/")}
    assert {k: again[k] for k in tested} == tested


def test_a_qc_file_of_an_older_format_is_fitted_again_not_misread(trained_run, tmp_path):
    import shutil

    import torch

    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    saved = torch.load(old / "qc.pt", weights_only=True)
    # Before 2026-11-29 the Mahalanobis detectors saved their precision matrix, not the covariance's factor.
    saved["state_dict"] = {k.replace(".chol", ".precision"): v for k, v in saved["state_dict"].items()}
    torch.save(saved, old / "qc.pt")
    again = evaluate_run(old, today_catalog(), families=None)
    trained = read_metrics(trained_run)
    assert {k: again[k] for k in trained if k.startswith("test/")} == {k: v for k, v in trained.items()
                                                                        if k.startswith("test/")}
    assert ".chol" in " ".join(torch.load(old / "qc.pt", weights_only=True)["state_dict"])  # refitted, saved anew


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
    for name in ("china.jpg", "flower.jpg"):  # photos with no star or moon in them
        Image.fromarray(load_sample_image(name)).save(folder / name)
    before = sorted(p.name for p in folder.iterdir())

    result = audit(str(trained_run), str(folder))
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written into the image folder
    rows = list(csv.DictReader((result["out"] / "audit.csv").read_text().splitlines()))
    assert [r["file"] for r in rows] == ["alpha.png", "china.jpg", "flower.jpg", "good_0.png", "good_1.png",
                                         "good_2.png", "good_3.png", "grey.png", "scan.jpg"]
    score = f"score_{result['gate']}"
    for r in rows:
        assert r["predicted_class"] in ("star", "moon") and 0.5 <= float(r["confidence"]) <= 1.0
        assert r["ood_flag"] == str(int(float(r[score]) < result["threshold"]))
    by_file = {r["file"]: r for r in rows}
    assert by_file["china.jpg"]["ood_flag"] == by_file["flower.jpg"]["ood_flag"] == "1"  # no shape: flagged
    assert by_file["good_0.png"]["ood_flag"] == "0"
    # The contact sheet's order: the most suspicious first, the photos lowest of all.
    lowest = sorted(rows, key=lambda r: float(r[score]))[:2]
    assert {r["file"] for r in lowest} == {"china.jpg", "flower.jpg"}
    skipped = dict(result["skipped"])
    assert set(skipped) == {"truncated.jpg", "notes.txt"}
    assert skipped["notes.txt"] == "not an image file" and "unreadable" in skipped["truncated.jpg"]
    assert (result["out"] / "contact_sheet.png").stat().st_size > 1000
    text = summary(result)
    assert "audited 9 images (2 skipped)" in text and "keeps 95%" in text and result["gate"] in text


def test_a_sweep_is_ranked_on_a_labelled_sample(trained_run, tmp_path, cache_dir):
    from tests.helpers import make_cfg, save_job_config

    sweep = tmp_path / "sweep"
    shutil.copytree(trained_run, sweep / "0_arch=cnn")
    cfg = make_cfg(["debug=smoke", "logger=none", "arch=maxpool", "trainer.max_epochs=1"], sweep / "1_arch=maxpool",
                   cache_dir)
    train(cfg)
    save_job_config(cfg, sweep / "1_arch=maxpool")
    sample = tmp_path / "sample"
    params = sample_params(6, 64, np.random.default_rng(7))
    images, _ = render(params, 64)
    for i, (img, label) in enumerate(zip(images, params.label, strict=True)):
        (sample / ("star", "moon")[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sample / ("star", "moon")[label] / f"{i}.png")

    result = rank_sweep(str(sweep), str(sample))
    assert result["labelled"] and len(result["runs"]) == 2
    for run in result["runs"]:  # each run's accuracy is its own audit's, with a Wilson interval
        alone = audit(run["run_dir"], str(sample), out=str(tmp_path / "alone" / run["arch"]))
        assert run["n"] == 12 and run["accuracy"] == pytest.approx(alone["accuracy"])
        assert run["low"] <= run["accuracy"] <= run["high"]
    accuracies = [r["accuracy"] for r in result["runs"]]
    assert accuracies == sorted(accuracies, reverse=True)
    text = result["md"].read_text()
    assert f"Deploy: **arch={result['runs'][0]['arch']} aug=none**" in text
    assert len((result["csv"]).read_text().splitlines()) == 3

    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(sample / "star", unlabelled)
    result = rank_sweep(str(sweep), str(unlabelled), out=str(tmp_path / "rank2"))
    assert not result["labelled"] and "ranked by the share each model's gate flags" in result["md"].read_text()


def test_wilson_interval_known_values():
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)  # the textbook 0/10 case
    low, high = wilson(50, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))


def test_audit_warns_when_far_more_images_are_flagged_than_iid():
    result = {"out": "x", "n": 10, "skipped": [], "flagged": 0.6, "threshold": 0.9, "iid_flagged": 0.05, "gate": "msp",
              "keep": 0.95, "classes": {"star": 5, "moon": 5}}
    assert "WARNING" in summary(result)
    assert "WARNING" not in summary({**result, "flagged": 0.06})
