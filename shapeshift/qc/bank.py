"""A run's fitted detectors: fitted on its training images with the evaluated weights, scored in the same
forward pass as the test metrics, saved beside the checkpoint so `evaluate` and `audit` reuse them."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shapeshift.data import IID
from shapeshift.data.base import model_input
from shapeshift.models.features import tapped
from shapeshift.qc.detectors import MaxSoftmax, build
from shapeshift.qc.gate import (
    SaturatedScores,
    atc_estimate,
    atc_threshold,
    detection,
    failure_detection,
    gate_metrics,
    risk_coverage,
    threshold,
)

log = logging.getLogger("shapeshift")
ATC = "atc"  # the label-free accuracy estimator (Garg et al. 2022)


class DetectorBank(nn.Module):
    def __init__(self, detectors: Sequence[str], gate: str, keep: float = 0.95, k: int = 10):
        super().__init__()
        if gate not in detectors:
            raise ValueError(f"qc.gate={gate!r} must be one of qc.detectors {list(detectors)}")
        self.detectors = nn.ModuleDict({name: build(name, k) for name in detectors})
        self.gate, self.keep, self.k = gate, keep, k
        self.register_buffer("cut", torch.tensor(math.nan, dtype=torch.float64))  # NaN: the gate is saturated
        # ATC's threshold on the confidence (log max-softmax), fitted on the validation images.
        self.register_buffer("atc_cut", torch.tensor(math.nan, dtype=torch.float64))
        self.confidence = MaxSoftmax()  # ATC's score, whichever detectors are configured
        self.fitted_on: dict = {}  # which weights: {"epoch": ..., "step": ...}
        self.reset()

    @property
    def needs_features(self) -> bool:
        return any(d.features for d in self.detectors.values())

    def scores(self, logits: torch.Tensor, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Outside autocast: under bf16 a cosine of 0.998 rounds to 1.0 and every score ties.
        with torch.autocast(logits.device.type, enabled=False):
            return {name: d.score(logits.float(), features).cpu() for name, d in self.detectors.items()}

    def _passes(self, model, images: np.ndarray, batch: int, bf16: bool):
        """(logits, features) per batch of uint8 images, through `model` in eval mode, no gradients."""
        device = next(model.parameters()).device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        model.eval()
        with torch.no_grad(), tapped(model.backbone) as tap, autocast:
            for i in range(0, len(images), batch):
                logits = model(model_input(images[i : i + batch]).to(device)).float()
                yield logits, (tap.features() if self.needs_features else {})

    def forward_scores(self, model, images: np.ndarray, batch: int = 500, bf16: bool = False):
        """Logits and every detector's score for uint8 images."""
        logits, scores = [], []
        for out, features in self._passes(model, images, batch, bf16):
            logits.append(out.cpu())
            scores.append(self.scores(out, features))
        empty = torch.empty(0)
        return (
            torch.cat(logits) if logits else empty,
            {n: torch.cat([s[n] for s in scores]) if scores else empty for n in self.detectors},
        )

    def fit(self, model, datamodule, bf16: bool = False, batch: int = 500) -> None:
        """Fit on the training images (no augmentation), then set the gate's cut on the validation images."""
        if self.needs_features:
            images, labels = datamodule.arrays("train")
            feats: dict[str, list[torch.Tensor]] = {}
            for _, features in self._passes(model, images, batch, bf16):
                for kind, f in features.items():
                    feats.setdefault(kind, []).append(f.cpu())
            labels_t = torch.from_numpy(np.asarray(labels, np.int64))
            for d in self.detectors.values():
                if d.features:
                    d.fit(torch.cat(feats[d.features]), labels_t)
        val_images, val_labels = datamodule.arrays("val")
        val_logits, val = self.forward_scores(model, val_images, batch, bf16)
        val_acc = float(
            (val_logits.argmax(1) == torch.as_tensor(np.asarray(val_labels, np.int64))).double().mean()
        )
        self.atc_cut = torch.tensor(
            atc_threshold(self.confidence.score(val_logits, {}), val_acc), dtype=torch.float64
        )
        try:
            self.cut = torch.tensor(threshold(val[self.gate], self.keep), dtype=torch.float64)
        except SaturatedScores as err:
            log.warning("qc.gate=%s cannot gate this run: %s; choose another qc.gate", self.gate, err)
            self.cut = torch.tensor(math.nan, dtype=torch.float64)

    # -- the test loop: accumulate per batch, measure per set at the end ----------------------------------
    def reset(self) -> None:
        self._batches: list[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []

    def update(self, set_index: torch.Tensor, correct: torch.Tensor, logits, features) -> None:
        scores = {**self.scores(logits, features), ATC: self.confidence.score(logits.float(), {}).cpu()}
        self._batches.append((set_index.cpu(), correct.cpu(), scores))

    def compute(self, set_names: Sequence[str]) -> tuple[dict[str, float], dict]:
        """Per set: each detector's AUROC and FPR95 against the i.i.d. set (novelty), its failure AUROC,
        AURC and E-AURC on the set pooled with the i.i.d. set (right vs wrong predictions), and the gate's
        coverage and accepted accuracy; plus the gate's risk-coverage curve on `mix` (else the i.i.d. set)."""
        if not self._batches:
            return {}, {}
        index = torch.cat([b[0] for b in self._batches])
        correct = torch.cat([b[1] for b in self._batches])
        scores = {n: torch.cat([b[2][n] for b in self._batches]) for n in [*self.detectors, ATC]}
        confidence = scores.pop(ATC)
        self.reset()
        metrics: dict[str, float] = {}
        iid = index == set_names.index(IID) if IID in set_names else None
        for i, name in enumerate(set_names):
            member = index == i
            if not member.any():
                continue
            if iid is not None and name != IID:
                for det, s in scores.items():
                    for key, value in detection(s[iid], s[member]).items():
                        metrics[f"test/{name}/{key}/{det}"] = value
            # Failure detection on the i.i.d. test images pooled with this set: what a deployment meets.
            pooled = member if iid is None else member | iid
            for det, s in scores.items():
                for key, value in failure_detection(s[pooled], correct[pooled]).items():
                    metrics[f"test/{name}/{key}/{det}"] = value
            if not torch.isnan(self.cut):
                for key, value in gate_metrics(
                    scores[self.gate][member], correct[member], float(self.cut)
                ).items():
                    metrics[f"test/{name}/{key}"] = math.nan if value is None else value
        metrics.update(accuracy_estimates(set_names, index, correct, confidence, float(self.atc_cut)))
        curve_set = "mix" if "mix" in set_names else IID
        curves = {}
        if curve_set in set_names and (member := index == set_names.index(curve_set)).any():
            curves = {
                "set": curve_set,
                "detector": self.gate,
                **risk_coverage(scores[self.gate][member], correct[member]),
            }
        return metrics, curves


def accuracy_estimates(set_names, index, correct, confidence, cut: float) -> dict[str, float]:
    """Per set, ATC's label-free accuracy estimate; over the o.o.d. sets (the catalog and `mix`), its mean
    absolute error against the measured accuracy."""
    if math.isnan(cut):
        return {}
    metrics, errors = {}, []
    for i, name in enumerate(set_names):
        member = index == i
        if member.any():
            estimate = atc_estimate(confidence[member], cut)
            metrics[f"test/{name}/acc_estimate/{ATC}"] = estimate
            if name != IID:
                errors.append(abs(estimate - float(correct[member].double().mean())))
    if errors:
        metrics[f"test/acc_estimate_mae/{ATC}"] = sum(errors) / len(errors)
    return metrics


def save(bank: DetectorBank, path: Path) -> None:
    torch.save(
        {
            "detectors": list(bank.detectors),
            "gate": bank.gate,
            "keep": bank.keep,
            "k": bank.k,
            "fitted_on": bank.fitted_on,
            "state_dict": bank.state_dict(),
        },
        path,
    )


def load(
    path: Path, detectors: Sequence[str], gate: str, keep: float, k: int, fitted_on: dict
) -> DetectorBank | None:
    """The saved bank if it was fitted with this config on these weights, else None (refit)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
    same = (
        saved.get("detectors"),
        saved.get("gate"),
        saved.get("keep"),
        saved.get("k"),
        saved.get("fitted_on"),
    )
    if same != (list(detectors), gate, keep, k, fitted_on):
        return None
    bank = DetectorBank(detectors, gate, keep, k)
    if set(saved["state_dict"]) != set(bank.state_dict()):  # an older format (the Mahalanobis precision)
        log.info("%s was saved by an older version of shapeshift: the detectors are fitted again", path)
        return None
    for name, det in bank.detectors.items():  # size the buffers before loading into them
        for buf in det.state_dict():
            setattr(det, buf, saved["state_dict"][f"detectors.{name}.{buf}"])
    bank.load_state_dict(saved["state_dict"])
    bank.fitted_on = fitted_on
    return bank
