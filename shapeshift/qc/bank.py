"""A run's fitted detectors: fitted on its training images with the evaluated weights, calibrated on its
validation images (the gate chosen and its threshold set, ATC's threshold), scored in the same forward pass
as the test metrics. The fitted part is saved beside the checkpoint so `evaluate` and `audit` reuse it;
calibration is redone each time, since it depends on the references given."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shapeshift.config.schema import AUTO_GATE, NOVELTY_ORDER, REFERENCE, QCConfig
from shapeshift.config.validation import check_detector_roles
from shapeshift.console.progress import track
from shapeshift.data import IID
from shapeshift.data.base import model_input
from shapeshift.models.features import tapped
from shapeshift.qc import estimates, invariance
from shapeshift.qc.detectors import MaxSoftmax, build, reference_score
from shapeshift.qc.estimates import CONFIDENCE, PER_IMAGE, Baseline
from shapeshift.qc.gate import (
    SaturatedScores,
    detection,
    failure_detection,
    gate_metrics,
    risk_coverage,
    threshold,
)
from shapeshift.runs.metric_keys import MIX, test_key

log = logging.getLogger("shapeshift")
# The reference gate's threshold with a meaning: flagged when the references' mean probability for the
# model's class is below one half (they would rather have another class), and below the level that keeps
# `keep` of the right validation predictions. Set from the i.i.d. scores alone it sat at -0.011 (p < 0.989):
# where the references saturate on i.i.d. images, any image they are less than certain of was rejected.
REFERENCE_CUT = math.log(0.5)


class DetectorBank(nn.Module):
    def __init__(self, settings: QCConfig):
        """`settings`: the run's `qc` config (a QCConfig or the DictConfig composed from it); the bank reads
        its detectors, gate, novelty, keep and k."""
        super().__init__()
        check_detector_roles(settings)
        detectors, novelty = list(settings.detectors), settings.novelty
        if novelty == AUTO_GATE:
            novelty = next((d for d in NOVELTY_ORDER if d in detectors), None)
        self.detectors = nn.ModuleDict({name: build(name, settings.k) for name in detectors})
        gate = settings.gate
        self.gate_setting, self.novelty, self.keep, self.k = gate, novelty, settings.keep, settings.k
        self.confidence = MaxSoftmax()
        self.references: list[nn.Module] = []  # other runs' classifiers: not saved, given at each use
        self.reference_runs: list[str] = []
        self.invariance_setting = getattr(settings, "invariances", AUTO_GATE)
        # Set by calibrate(): the transforms checked (the data's own under `auto`), which references are used
        # (qc/invariance.py) and how invariant each run is.
        self.invariances: list[str] = []
        self.active: list[int] = []
        self.reference_consistency: list[float] = []
        self.consistency = math.nan  # the model's own
        # Set by calibrate(): the estimators' baseline on the validation images (qc/estimates.py).
        self.val_acc = self.val_confidence = self.atc_cut = self.atc_ne_cut = math.nan
        self.reference_val: list[tuple[float, float]] = []  # each active reference's (accuracy, confidence)
        self.val_prior: list[int] = []  # the validation labels per class
        self.fitted_on: dict = {}  # which weights: {"epoch": ..., "step": ...}
        # Set by calibrate(): the gate in use, the thresholds (NaN: unusable), what the choice rested on.
        self.gate: str | None = None if gate == AUTO_GATE else gate
        self.cut = self.novelty_cut = math.nan
        self.selection: dict[str, float] = {}
        self.selected_on = ""
        self.val_scores: dict[str, torch.Tensor] = {}
        self.reset()

    @property
    def names(self) -> list[str]:
        # The reference first: where the selection images cannot tell detectors apart (no errors among
        # them), it is the one that can see confident errors, which no score of the model's own can.
        return [*([REFERENCE] if self.references else []), *self.detectors]

    @property
    def needs_features(self) -> bool:
        return any(d.features for d in self.detectors.values())

    def attach_references(self, models: Sequence[nn.Module], runs: Sequence[str] = ()) -> None:
        self.references, self.reference_runs = [m.eval() for m in models], [str(r) for r in runs]
        self.active = list(range(len(self.references)))

    @property
    def references_used(self) -> list[str]:
        return [self.reference_runs[i] for i in self.active if i < len(self.reference_runs)]

    def to(self, *args, **kwargs):
        for ref in self.references:
            ref.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def scores(self, logits, features, inputs=None) -> dict[str, torch.Tensor]:
        # References run in the caller's autocast, as the model did; the detectors outside it: under bf16 a
        # cosine of 0.998 rounds to 1.0 and every score ties.
        references = [self.references[i](inputs).float() for i in self.active] if self.references else []
        with torch.autocast(logits.device.type, enabled=False):
            out = {name: d.score(logits.float(), features).cpu() for name, d in self.detectors.items()}
            if references:
                out[REFERENCE] = reference_score(logits.float(), references).cpu()
            out[CONFIDENCE] = self.confidence.score(logits.float(), {}).cpu()
            out.update({k: v.cpu() for k, v in estimates.per_image(logits.float(), references).items()})
        return out

    @property
    def baseline(self) -> Baseline:
        return Baseline(
            self.val_acc,
            self.val_confidence,
            self.atc_cut,
            self.atc_ne_cut,
            self.reference_val,
            self.val_prior,
        )

    def _passes(self, model, images: np.ndarray, batch: int, bf16: bool, what: str = "qc: scoring"):
        """(logits, features, inputs) per batch of uint8 images through `model`: eval mode, no gradients."""
        device = next(model.parameters()).device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        model.eval()
        with torch.no_grad(), tapped(model.backbone) as tap, autocast:
            for i in track(range(0, len(images), batch), what):
                inputs = model_input(images[i : i + batch]).to(device)
                logits = model(inputs).float()
                yield logits, (tap.features() if self.needs_features else {}), inputs

    def forward_scores(self, model, images: np.ndarray, batch: int = 500, bf16: bool = False):
        """Logits and every score (the detectors', the references', the confidence) for uint8 images."""
        logits, scores = [], []
        for out, features, inputs in self._passes(model, images, batch, bf16):  # in its no_grad and autocast
            scores.append(self.scores(out, features, inputs))
            logits.append(out.cpu())
        empty = torch.empty(0)
        return (
            torch.cat(logits) if logits else empty,
            {n: torch.cat([s[n] for s in scores]) if scores else empty for n in [*self.names, *PER_IMAGE]},
        )

    def fit(self, model, datamodule, bf16: bool = False, batch: int = 500) -> None:
        """Fit the feature detectors on the training images (no augmentation)."""
        if not self.needs_features:
            return
        images, labels = datamodule.arrays("train")
        feats: dict[str, list[torch.Tensor]] = {}
        for _, features, _ in self._passes(model, images, batch, bf16, "qc: fitting the detectors"):
            for kind, f in features.items():
                feats.setdefault(kind, []).append(f.cpu())
        labels_t = torch.from_numpy(np.asarray(labels, np.int64))
        for d in self.detectors.values():
            if d.features:
                d.fit(torch.cat(feats[d.features]), labels_t)

    def calibrate(self, model, datamodule, select_on: list, bf16: bool = False, batch: int = 500) -> None:
        """On the validation images: ATC's threshold, the gate (chosen when `auto`, on validation images
        pooled with held-out shifted ones, `select_on`) and its threshold, the novelty threshold."""
        images, labels = datamodule.arrays("val")
        self._choose_references(datamodule, images, batch)
        logits, val = self.forward_scores(model, images, batch, bf16)
        self.val_scores = val  # what the thresholds were set on (the audit reports the shares it flags)
        labels_t = torch.as_tensor(np.asarray(labels, np.int64))
        correct = logits.argmax(1) == labels_t
        base = estimates.baseline(val, labels_t, correct, logits.shape[1])
        self.val_acc, self.val_confidence = base.acc, base.confidence
        self.atc_cut, self.atc_ne_cut = base.atc_cut, base.atc_ne_cut
        self.reference_val, self.val_prior = base.references, base.prior
        if self.gate_setting == REFERENCE and not self.references:
            raise ValueError("qc.gate=reference needs qc.reference (other runs to compare with)")
        flipped = None  # the model's classes on the validation images under the invariances, when known
        if self.gate_setting == AUTO_GATE:
            flipped = self._choose(model, datamodule, select_on, val, correct, bf16, batch, (images, labels))
        self._own_consistency(model, images, logits.argmax(1), flipped, batch)
        # The gate keeps `keep` of the *right* validation predictions: it is there to pass them and stop the
        # wrong ones, and a model with 12% validation errors would otherwise set its cut among its errors.
        right = correct if correct.any() else torch.ones_like(correct)
        if self.gate == REFERENCE:
            cut = self._threshold({REFERENCE: val[REFERENCE][right]}, REFERENCE, "qc.gate", quiet=True)
            self.cut = REFERENCE_CUT if math.isnan(cut) else min(cut, REFERENCE_CUT)
        else:
            self.cut = self._threshold({n: v[right] for n, v in val.items()}, self.gate, "qc.gate")
        self.novelty_cut = self._threshold(val, self.novelty, "qc.novelty") if self.novelty else math.nan

    def _choose_references(self, datamodule, images, batch: int) -> None:
        """Keep the references about as invariant as the most invariant one under the data's declared
        label-preserving transforms, measured on the validation images: no label is read."""
        names = self.invariance_setting
        names = list(getattr(datamodule, "invariances", ())) if names in (None, AUTO_GATE) else list(names)
        self.invariances = invariance.check(names)
        self.reference_consistency, self.active = [], list(range(len(self.references)))
        if not names or not self.references:
            return
        scores = invariance.consistency(self.references, images, names, batch)
        self.reference_consistency = scores.tolist()
        self.active = invariance.select(scores)
        dropped = len(self.references) - len(self.active)
        log.info(
            "qc: %d of %d references kept for their invariance under %s on the validation images "
            "(consistency kept %s, dropped %s)",
            len(self.active),
            len(self.references),
            ", ".join(names),
            _span([self.reference_consistency[i] for i in self.active]),
            _span([c for i, c in enumerate(self.reference_consistency) if i not in self.active])
            if dropped
            else "none",
        )

    def _own_consistency(self, model, images, predicted, flipped, batch: int) -> None:
        """The run's own consistency under the invariances on the validation images, from the classes the
        gate's choice computed on the flipped images when it did (`flipped`), else from two more passes."""
        if not self.invariances:
            return
        if flipped is not None and len(flipped) == len(predicted) * len(self.invariances):
            same = flipped == predicted.repeat(len(self.invariances))
            self.consistency = float(same.double().mean()) if len(same) else math.nan
        else:
            self.consistency = float(
                invariance.consistency([model], images, self.invariances, batch, predicted=[predicted])[0]
            )
        log.info("qc: this run's consistency under %s: %.3f", ", ".join(self.invariances), self.consistency)

    def _choose(self, model, datamodule, select_on, val, correct, bf16, batch, val_arrays):
        """The gate with the lowest E-AURC on the validation images pooled with held-out shifted ones
        (`select_on`) and with the validation images under the data's declared invariances: those keep
        their labels by the data's own word, so a gate that rejects a right answer there (a novelty score
        on a flipped shape the model reads correctly) is penalised, and one that passes a shortcut's errors
        there too. Returns the model's classes on the flipped validation images (None if none were)."""
        if len(self.names) == 1:
            self.gate, self.selected_on = self.names[0], "the only detector"
            return None
        shifted, shifted_labels = datamodule.selection_arrays(select_on)
        flipped, flipped_labels = invariance.transformed(*val_arrays, self.invariances)
        scores, classes = dict(val), None
        for images, labels in ((shifted, shifted_labels), (flipped, flipped_labels)):
            if len(images):
                logits, more = self.forward_scores(model, images, batch, bf16)
                classes = logits.argmax(1)  # the last: the flipped images', which the consistency reads
                right = classes == torch.as_tensor(np.asarray(labels, np.int64))
                correct = torch.cat([correct, right])
                scores = {n: torch.cat([scores[n], more[n]]) for n in scores}
        self.selection = {n: failure_detection(scores[n], correct)["eaurc"] for n in self.names}
        self.gate = min(self.names, key=lambda n: self.selection[n])  # ties: the first of `names`
        self.selected_on = (
            f"{len(val[CONFIDENCE])} validation + {len(shifted)} held-out shifted"
            + (f" + {len(flipped)} under {', '.join(self.invariances)}" if len(flipped) else "")
            + " validation images"
        )
        if not self.references:
            log.info("qc: no reference runs, so the gate is chosen among the run's own detectors")
        log.info("qc: gate %s (lowest E-AURC on %s)", self.gate, self.selected_on)
        return classes if len(flipped) else None

    def _threshold(self, val, name: str, role: str, quiet: bool = False) -> float:
        try:
            return threshold(val[name], self.keep)
        except SaturatedScores as err:
            if not quiet:
                log.warning("%s=%s cannot gate this run: %s; choose another", role, name, err)
            return math.nan

    def summary(self) -> dict:
        """What the gate rests on, for metrics.json: its detector, the references, the selection."""
        return {
            "qc/gate": self.gate,
            "qc/references": self.reference_runs,
            "qc/references_used": self.references_used,
            "qc/invariance": self.consistency,
            **{f"qc/selection_eaurc/{n}": v for n, v in self.selection.items()},
        }

    # -- the test loop: accumulate per batch, measure per set at the end ----------------------------------
    def reset(self) -> None:
        self._batches: list[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []

    def update(self, set_index: torch.Tensor, correct: torch.Tensor, logits, features, inputs=None) -> None:
        self._batches.append((set_index.cpu(), correct.cpu(), self.scores(logits, features, inputs)))

    def compute(self, set_names: Sequence[str]) -> tuple[dict[str, float], dict]:
        """Per set: each detector's AUROC and FPR95 against the i.i.d. set (novelty), its failure AUROC,
        AURC and E-AURC on the set pooled with the i.i.d. set (right vs wrong predictions), the gate's
        coverage and accepted accuracy, the label-free accuracy estimates; plus the gate's risk-coverage
        curve on `mix` (else the i.i.d. set)."""
        if not self._batches:
            return {}, {}
        index = torch.cat([b[0] for b in self._batches])
        correct = torch.cat([b[1] for b in self._batches])
        scores = {n: torch.cat([b[2][n] for b in self._batches]) for n in [*self.names, *PER_IMAGE]}
        per_image = {n: scores.pop(n) for n in PER_IMAGE}
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
                        metrics[test_key(name, key, det)] = value
            # Failure detection on the i.i.d. test images pooled with this set: what a deployment meets.
            pooled = member if iid is None else member | iid
            for det, s in scores.items():
                for key, value in failure_detection(s[pooled], correct[pooled]).items():
                    metrics[test_key(name, key, det)] = value
            if self.gate and not math.isnan(self.cut):
                for key, value in gate_metrics(scores[self.gate][member], correct[member], self.cut).items():
                    metrics[test_key(name, key)] = math.nan if value is None else value
        metrics.update(
            estimates.per_set(set_names, index, correct, per_image, self.baseline, scores.get(REFERENCE))
        )
        curve_set = MIX if MIX in set_names else IID
        curves = {}
        if self.gate and curve_set in set_names and (member := index == set_names.index(curve_set)).any():
            curves = {
                "set": curve_set,
                "detector": self.gate,
                **risk_coverage(scores[self.gate][member], correct[member]),
            }
        return metrics, curves


def save(bank: DetectorBank, path: Path) -> None:
    """The fitted part, for `load`. Where and when is the run folder's (`shapeshift.runs`): called by it."""
    torch.save(
        {
            "detectors": list(bank.detectors),
            "k": bank.k,
            "fitted_on": bank.fitted_on,
            "state_dict": bank.state_dict(),
        },
        path,
    )


def load(path: Path, settings: QCConfig, fitted_on: dict) -> DetectorBank | None:
    """The saved bank if it was fitted with these detectors and k on these weights, else None (refit)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
    wanted = (list(settings.detectors), settings.k, fitted_on)
    if (saved.get("detectors"), saved.get("k"), saved.get("fitted_on")) != wanted:
        return None
    bank = DetectorBank(settings)
    if set(saved["state_dict"]) != set(bank.state_dict()):  # an older format (the Mahalanobis precision)
        log.info("%s was saved by an older version of shapeshift: the detectors are fitted again", path)
        return None
    for key, value in saved[
        "state_dict"
    ].items():  # assigned, not copied: the buffers change size when fitted
        owner, _, buffer = key.rpartition(".")
        setattr(bank.get_submodule(owner), buffer, value)
    bank.fitted_on = fitted_on
    return bank


def _span(values: Sequence[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}" if values else "none"
