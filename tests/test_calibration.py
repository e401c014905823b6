"""The calibrated gate kept in the run folder (qc_calibration.pt): reused only when every input is the same,
computed again otherwise, and an audit that reuses it says exactly what a fresh one says."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from shapeshift.audit import audit
from shapeshift.config.schema import QCConfig
from shapeshift.data.render import render, sample_params
from shapeshift.qc import calibration
from shapeshift.qc.bank import DetectorBank
from shapeshift.runs.folder import CALIBRATION_FILE


@pytest.fixture
def run(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    shapes, _ = render(sample_params(6, 64, np.random.default_rng(7)), 64)
    for i, img in enumerate(shapes):
        Image.fromarray(img).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def calibrations(monkeypatch):
    """How many times a bank was calibrated from scratch."""
    count = {"n": 0}
    original = DetectorBank.calibrate

    def counted(self, *args, **kwargs):
        count["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DetectorBank, "calibrate", counted)
    return count


def test_a_second_audit_reuses_the_calibration_and_says_the_same(run, images, tmp_path, calibrations):
    (run / CALIBRATION_FILE).unlink(missing_ok=True)  # as a run made before the file existed
    first = audit(str(run), str(images), out=str(tmp_path / "a1"), drift=False)
    assert calibrations["n"] == 1 and (run / CALIBRATION_FILE).is_file()
    second = audit(str(run), str(images), out=str(tmp_path / "a2"), drift=False)
    assert calibrations["n"] == 1  # nothing calibrated again
    assert (tmp_path / "a1" / "audit.csv").read_text() == (tmp_path / "a2" / "audit.csv").read_text()
    for key in ("gate", "threshold", "iid_flagged", "flagged", "estimate", "novel", "consistency"):
        assert first[key] == second[key], key


def test_another_keep_or_a_broken_file_calibrates_again(run, images, tmp_path, calibrations):
    audit(str(run), str(images), out=str(tmp_path / "a"), drift=False)
    n = calibrations["n"]
    strict = audit(str(run), str(images), out=str(tmp_path / "b"), keep=0.8, drift=False)
    assert calibrations["n"] == n + 1  # another keep: another threshold
    again = audit(str(run), str(images), out=str(tmp_path / "c"), keep=0.8, drift=False)
    assert calibrations["n"] == n + 1 and again["threshold"] == strict["threshold"]  # kept beside the first
    (run / CALIBRATION_FILE).write_bytes(b"not a torch file")
    audit(str(run), str(images), out=str(tmp_path / "d"), drift=False)
    assert calibrations["n"] == n + 2  # unreadable: ignored, computed again, written anew
    fresh = DetectorBank(QCConfig(detectors=["msp"]))
    assert calibration.restore(fresh, run / CALIBRATION_FILE, "no such key") is False


class Tiny(nn.Module):
    def __init__(self, bias: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(4, 2)
        with torch.no_grad():
            self.linear.weight.fill_(0.1)
            self.linear.bias.fill_(bias)


class Data:
    invariances = ("hflip",)

    def __init__(self, images):
        self.images = images

    def arrays(self, name):
        return self.images, np.zeros(len(self.images), np.int64)


def test_the_key_changes_with_every_input():
    """Weights, references (and their order), settings, select_on, precision and the validation images."""
    x = np.zeros((4, 8, 8, 3), np.uint8)
    bank = DetectorBank(QCConfig(detectors=["msp", "energy"], gate="auto", novelty=None))
    base = calibration.key(bank, Tiny(), Data(x), [], False)
    assert calibration.key(bank, Tiny(), Data(x), [], False) == base  # by content, not by object
    assert calibration.key(bank, Tiny(0.5), Data(x), [], False) != base
    assert calibration.key(bank, Tiny(), Data(x + 1), [], False) != base
    assert calibration.key(bank, Tiny(), Data(x), [{"occlusion": {"size": 0.3}}], False) != base
    assert calibration.key(bank, Tiny(), Data(x), [], True) != base
    strict = DetectorBank(QCConfig(detectors=["msp", "energy"], gate="auto", novelty=None, keep=0.8))
    assert calibration.key(strict, Tiny(), Data(x), [], False) != base
    bank.attach_references([Tiny(1.0), Tiny(2.0)])
    with_refs = calibration.key(bank, Tiny(), Data(x), [], False)
    bank.attach_references([Tiny(2.0), Tiny(1.0)])
    assert len({base, with_refs, calibration.key(bank, Tiny(), Data(x), [], False)}) == 3
