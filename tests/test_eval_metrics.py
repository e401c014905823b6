"""Test-time metrics on hand-made logits (ECE, AUROC/FPR95, the gate's coverage) and shift consistency."""

import math

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shapeshift.config.schema import QCConfig
from shapeshift.data.render import render, sample_params
from shapeshift.models.classifier import Classifier
from shapeshift.models.test_run import TestRun
from shapeshift.qc.bank import DetectorBank


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
    bank = DetectorBank(QCConfig(detectors=["msp", "energy"], gate="msp", novelty=None))
    bank.cut = torch.tensor(cut, dtype=torch.float64)
    model.test_run = TestRun(detectors=bank)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(model, DataLoader(TensorDataset(x, y, s), batch_size=7), verbose=False)
    # Every metric is in model.test_run; Lightning's callback metrics hold each set's accuracy.
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert logged == {f"test/{n}/acc": model.test_run.metrics[f"test/{n}/acc"] for n in names}
    return model.test_run.metrics


def test_ece_and_auroc_on_hand_made_logits():
    y = torch.tensor([0, 1] * 50)
    right = y.numpy()
    half_wrong = np.where(np.arange(100) < 50, right, 1 - right)  # 50% accurate
    ten_wrong = np.where(np.arange(100) < 90, right, 1 - right)  # 90% accurate
    m = run_test_loop(
        {
            "iid": (logits_for(0.9, ten_wrong), y),  # confidence 0.9, accuracy 0.9: calibrated
            "over": (logits_for(0.9, half_wrong), y),  # confidence 0.9, accuracy 0.5: ECE 0.4
            "humble": (logits_for(0.6, half_wrong), y),  # less confident than every i.i.d. image
        },
        cut=math.log(0.75),
    )  # the gate accepts confidence >= 0.75
    assert m["test/iid/acc"] == pytest.approx(0.9)
    assert m["test/iid/ece"] == pytest.approx(0.0, abs=1e-5)
    assert m["test/over/ece"] == pytest.approx(0.4, abs=1e-5)
    assert m["test/humble/ece"] == pytest.approx(0.1, abs=1e-5)
    assert m["test/over/auroc/msp"] == pytest.approx(0.5)  # same confidence: cannot tell the sets apart
    assert m["test/over/fpr95/msp"] == pytest.approx(1.0)
    assert m["test/humble/auroc/msp"] == pytest.approx(1.0)  # lower confidence on every o.o.d. image
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
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(model, DataLoader(TensorDataset(x, y, torch.zeros_like(y)), batch_size=32), verbose=False)
    consistency = model.test_run.metrics["test/consistency"]
    assert float(trainer.callback_metrics["test/consistency"]) == consistency
    if expect_one:
        assert consistency == 1.0
    else:
        assert consistency < 0.75
