"""One trained run applied to deployment images: predictions, the gate's and the novelty detector's
scores and decisions, and a label-free estimate of the accuracy on them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import open_dict

from shapeshift.audit.images import Folder
from shapeshift.config.errors import ConfigError
from shapeshift.config.schema import REFERENCE
from shapeshift.engine.pipeline import build_datamodule, quality_control
from shapeshift.engine.references import override_qc, qc_references
from shapeshift.engine.restore import load_model, load_run_config
from shapeshift.engine.runtime import AUTO, device_for
from shapeshift.qc import estimates, invariance
from shapeshift.runs.folder import write_files


@dataclass
class Screening:
    gate: str
    cut: float  # accept: score >= cut
    keep: float
    iid_flagged: float  # share of the run's i.i.d. validation images the gate flags
    predicted: np.ndarray
    confidence: np.ndarray  # maximum softmax probability
    score: np.ndarray  # the gate's score, higher = more likely right
    novelty: str | None  # the o.o.d. detector behind `novel`
    novelty_score: np.ndarray
    novelty_cut: float
    estimator: str  # the estimator behind `estimate` (estimates.DEFAULT: the first available)
    estimate: float  # label-free estimate of the accuracy on these images
    all_estimates: dict[str, float]  # every available estimator's estimate, for the record
    estimate_interval: tuple[float, float]  # 95%, sampling error only
    references: list[str]  # the reference runs used (those kept for their invariance)
    invariances: list[str]  # the label-preserving transforms checked
    consistency: float  # share of (image, transform) pairs of these images whose prediction a flip keeps
    class_names: tuple[str, ...]
    channels: int
    image_size: int

    @property
    def flagged(self) -> np.ndarray:
        """The gate's decision: this prediction is likely wrong."""
        return self.score < self.cut

    @property
    def novel(self) -> np.ndarray:
        """The novelty detector's verdict: this image is unlike the training images."""
        if self.novelty is None or math.isnan(self.novelty_cut):
            return np.zeros(len(self.score), bool)
        return self.novelty_score < self.novelty_cut


def load(run_dir: Path):
    """The run's config, its data module (no o.o.d. sets) and model."""
    cfg = load_run_config(run_dir)
    cfg.shift.families = {}
    datamodule = build_datamodule(cfg, augment=False)
    return cfg, datamodule, load_model(run_dir, cfg, datamodule.test_set_names)


def screen(
    run_dir: Path,
    folder: Folder,
    keep: float,
    loaded=None,
    accelerator: str = AUTO,
    reference=None,
    gate: str | None = None,
) -> Screening:
    """The run's predictions, scores and decisions for `folder`, on the device `accelerator` chooses
    (`auto`: the GPU when there is one). The gate is calibrated again on the run's validation images with
    `keep`, the `gate` and the references (`reference`; None: the run's own)."""
    cfg, datamodule, model = loaded or load(run_dir)
    model = model.to(device_for(accelerator))  # inputs follow the model (DetectorBank._passes)
    override_qc(cfg, gate, reference)
    references = qc_references(cfg, cfg.qc.reference, run_dir)
    with open_dict(cfg):
        cfg.qc.keep = keep
    (qc,) = quality_control(cfg, run_dir, references) or [None]
    if qc is None:
        raise ConfigError(f"{run_dir} has no o.o.d. detectors (qc.detectors is empty)")
    bank = qc.bank_for(model, datamodule)  # the run's qc.pt (or fitted now), calibrated
    write_files(run_dir, qc.files_to_save())  # detectors fitted now are kept for the next audit
    if math.isnan(bank.cut):
        raise ConfigError(f"the gate {bank.gate} cannot set a threshold for {run_dir}: its scores saturate")
    logits, scores = bank.forward_scores(model, folder.images)
    probs = logits.softmax(1) if len(logits) else logits
    n = len(folder.images)
    names = bank.invariances  # as calibrate() resolved them
    predicted = probs.argmax(1) if n else torch.empty(0, dtype=torch.long)
    same = invariance.consistency([model], folder.images, names, predicted=[predicted])  # NaN with no images
    every = {
        name: estimates.estimate(name, scores, bank.baseline, scores.get(REFERENCE))
        for name in estimates.available(bank.baseline, REFERENCE in scores)
    }
    estimator = next(name for name in estimates.DEFAULT if name in every)
    estimate = every[estimator]
    empty = torch.empty(0)
    return Screening(
        gate=bank.gate,
        cut=bank.cut,
        keep=keep,
        iid_flagged=float((bank.val_scores[bank.gate] < bank.cut).double().mean()),
        predicted=predicted.numpy(),
        confidence=probs.amax(1).numpy() if n else np.empty(0),
        score=scores[bank.gate].numpy(),
        novelty=bank.novelty,
        novelty_score=scores.get(bank.novelty, empty).numpy() if bank.novelty else np.empty(0),
        novelty_cut=bank.novelty_cut,
        estimator=estimator,
        estimate=estimate,
        estimate_interval=estimates.interval(estimate, n),
        all_estimates=every,
        references=bank.references_used,
        invariances=names,
        consistency=float(same[0]),
        class_names=tuple(datamodule.class_names),
        channels=datamodule.channels,
        image_size=cfg.data.image_size,
    )
