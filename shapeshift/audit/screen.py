"""One trained run applied to deployment images: predictions, the gate's scores and flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shapeshift.audit.images import Folder
from shapeshift.config import ConfigError
from shapeshift.pipeline import build_datamodule, quality_control
from shapeshift.qc.gate import SaturatedScores, threshold
from shapeshift.restore import load_model, load_run_config
from shapeshift.runtime import AUTO, device_for


@dataclass
class Screening:
    gate: str
    cut: float  # accept: score >= cut
    keep: float
    iid_flagged: float  # share of the run's i.i.d. validation images the gate flags
    predicted: np.ndarray
    confidence: np.ndarray  # maximum softmax probability
    score: np.ndarray  # the gate's score, higher = more like the training data
    class_names: tuple[str, ...]
    channels: int
    image_size: int

    @property
    def flagged(self) -> np.ndarray:
        return self.score < self.cut


def load(run_dir: Path):
    """The run's config, its data module (no o.o.d. sets) and model."""
    cfg = load_run_config(run_dir)
    cfg.shift.families = {}
    datamodule = build_datamodule(cfg, augment=False)
    return cfg, datamodule, load_model(run_dir, cfg, datamodule.test_set_names)


def screen(run_dir: Path, folder: Folder, keep: float, loaded=None, accelerator: str = AUTO) -> Screening:
    """The run's predictions and gate scores for `folder`, on the device `accelerator` chooses (`auto`: the
    GPU when there is one); the gate's threshold is set again on the run's i.i.d. validation images."""
    cfg, datamodule, model = loaded or load(run_dir)
    model = model.to(device_for(accelerator))  # inputs follow the model (DetectorBank._passes)
    (qc,) = quality_control(cfg, str(run_dir)) or [None]
    if qc is None:
        raise ConfigError(f"{run_dir} has no o.o.d. detectors (qc.detectors is empty)")
    bank = qc.bank_for(model, datamodule)  # the run's qc.pt, or fitted now for runs made before it
    _, val = bank.forward_scores(model, datamodule.arrays("val")[0])
    try:
        cut = threshold(val[bank.gate], keep)
    except SaturatedScores as err:
        raise ConfigError(f"the gate {bank.gate} cannot set a threshold for {run_dir}: {err}") from None
    logits, scores = bank.forward_scores(model, folder.images)
    probs = logits.softmax(1) if len(logits) else logits
    return Screening(
        bank.gate,
        cut,
        keep,
        float((val[bank.gate] < cut).double().mean()),
        probs.argmax(1).numpy() if len(probs) else np.empty(0, np.int64),
        probs.amax(1).numpy() if len(probs) else np.empty(0),
        scores[bank.gate].numpy(),
        tuple(datamodule.class_names),
        datamodule.channels,
        cfg.data.image_size,
    )
