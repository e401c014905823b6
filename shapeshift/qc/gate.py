"""Turning scores into decisions and measurements: the gate's threshold, AUROC, FPR at 95% TPR, coverage,
accuracy on accepted images, and the risk-coverage curve.

I.i.d. images are the positives throughout. Scores reach torchmetrics as dense ranks scaled to [0, 1]:
the order and every tie are kept exactly, while raw scores (energies of 30 or more, say) would be
squashed by the sigmoid torchmetrics applies outside [0, 1] and tie in float32.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import binary_auroc, binary_specificity_at_sensitivity

MIN_DISTINCT = 10  # fewer distinct validation scores than this: the detector is saturated, it cannot gate


class SaturatedScores(ValueError):
    """Ties make a threshold meaningless (for example, softmax confidences that are all 1.0)."""


def threshold(val_scores: torch.Tensor, keep: float) -> float:
    """The score at or above which `keep` of the i.i.d. validation images lie (accept: score >= threshold).

    Ties at the threshold are accepted together, so the share kept can exceed `keep`; when the scores
    hold fewer than MIN_DISTINCT values, no threshold says anything and SaturatedScores is raised.
    """
    scores = val_scores.double().sort(descending=True).values
    distinct = len(scores.unique())
    if distinct < min(MIN_DISTINCT, len(scores)):
        raise SaturatedScores(f"only {distinct} distinct scores among {len(scores)} validation images")
    return float(scores[max(0, math.ceil(keep * len(scores)) - 1)])


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    _, dense = torch.unique(scores.double(), return_inverse=True)
    top = dense.max().clamp(min=1)
    return dense.float() / top


def detection(iid: torch.Tensor, ood: torch.Tensor) -> dict[str, float]:
    """AUROC and FPR at 95% TPR of separating i.i.d. (positive) from o.o.d. images by score."""
    preds = _ranks(torch.cat([iid, ood]))
    target = torch.cat([torch.ones(len(iid)), torch.zeros(len(ood))]).long()
    specificity, _ = binary_specificity_at_sensitivity(preds, target, min_sensitivity=0.95)
    return {"auroc": float(binary_auroc(preds, target)), "fpr95": 1.0 - float(specificity)}


def gate_metrics(scores: torch.Tensor, correct: torch.Tensor, cut: float) -> dict[str, float | None]:
    """Share of a set the gate accepts, and the accuracy on what it accepts (None if it accepts nothing)."""
    accepted = scores.double() >= cut
    n = int(accepted.sum())
    return {
        "coverage": n / len(scores) if len(scores) else None,
        "accepted_acc": float(correct[accepted].float().mean()) if n else None,
    }


def risk_coverage(scores: torch.Tensor, correct: torch.Tensor, points: int = 20) -> dict[str, list[float]]:
    """Error rate among the accepted images when the highest-scoring share c is kept, c = 1/points .. 1."""
    order = scores.double().argsort(descending=True, stable=True)
    errors = (~correct.bool())[order].double().cumsum(0)
    coverage = [i / points for i in range(1, points + 1)]
    kept = [max(1, round(c * len(order))) for c in coverage]
    return {"coverage": coverage, "risk": [float(errors[n - 1] / n) for n in kept]}
