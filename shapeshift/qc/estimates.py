"""Label-free accuracy estimates: what a set's accuracy probably is, from its images alone.

- `atc`: Average Thresholded Confidence (Garg et al. 2022): the share of images whose confidence (log
  max-softmax) exceeds the threshold fitted on i.i.d. validation images (`gate.atc_threshold`).
- `agreement`: the references' mean probability for the model's predicted class, averaged over the
  images: the expected rate at which the references agree with the model (Jiang et al. 2022 estimate
  the error rate by the disagreement rate of independently trained models). Only the references kept for
  their invariance (qc/invariance.py) take part.
- `doc`: Difference of Confidences (Guillory et al. 2021): the validation accuracy minus the drop of the
  mean max-softmax confidence from the validation images to the set's.

A model that reads the quadrant is confidently wrong on swapped shapes, so ATC sees none of those errors;
a reference that reads the shape disagrees on every one of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from shapeshift.data import IID
from shapeshift.qc.gate import atc_estimate
from shapeshift.runs.metric_keys import estimate_error_key, test_key

ATC = "atc"
AGREEMENT = "agreement"
DOC = "doc"
Z95 = 1.959964  # the two-sided 95% normal quantile


def agreement_estimate(reference_scores: torch.Tensor) -> float:
    """Mean probability the references give the model's predictions (`reference` scores are its log)."""
    return float(reference_scores.double().exp().mean()) if len(reference_scores) else math.nan


def doc_estimate(log_confidence: torch.Tensor, val_acc: float, val_confidence: float) -> float:
    """Validation accuracy minus the fall in mean max-softmax confidence (`log_confidence` its log),
    clipped to [0, 1]."""
    if not len(log_confidence):
        return math.nan
    drop = val_confidence - float(log_confidence.double().exp().mean())
    return min(1.0, max(0.0, val_acc - drop))


def interval(estimate: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval for a mean of n values in [0, 1]: their variance is at most p(1 - p), so
    it covers the sampling error of either estimate (not the estimator's own bias: see the docs' MAE)."""
    if n == 0 or math.isnan(estimate):
        return math.nan, math.nan
    z2 = Z95**2 / n
    centre = (estimate + z2 / 2) / (1 + z2)
    half = Z95 * math.sqrt(estimate * (1 - estimate) / n + z2 / (4 * n)) / (1 + z2)
    return max(0.0, centre - half), min(1.0, centre + half)


def per_set(
    set_names: Sequence[str],
    index: torch.Tensor,
    correct: torch.Tensor,
    confidence: torch.Tensor,
    atc_cut: float,
    reference: torch.Tensor | None,
    validation: tuple[float, float] = (math.nan, math.nan),
) -> dict[str, float]:
    """Per set, each estimator's estimate; over the o.o.d. sets (the catalog and `mix`), each one's mean
    absolute error against the measured accuracy. `validation`: (accuracy, mean confidence) there, DoC's
    baseline."""
    estimators = {}
    val_acc, val_confidence = validation
    if not math.isnan(val_acc):
        estimators[DOC] = lambda member: doc_estimate(confidence[member], val_acc, val_confidence)
    if not math.isnan(atc_cut):
        estimators[ATC] = lambda member: atc_estimate(confidence[member], atc_cut)
    if reference is not None:
        estimators[AGREEMENT] = lambda member: agreement_estimate(reference[member])
    metrics: dict[str, float] = {}
    for name, estimate in estimators.items():
        errors = []
        for i, set_name in enumerate(set_names):
            member = index == i
            if member.any():
                value = estimate(member)
                metrics[test_key(set_name, "acc_estimate", name)] = value
                if set_name != IID:
                    errors.append(abs(value - float(correct[member].double().mean())))
        if errors:
            metrics[estimate_error_key(name)] = sum(errors) / len(errors)
    return metrics
