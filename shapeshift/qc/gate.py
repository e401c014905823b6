"""Turning scores into decisions and measurements: the gate's threshold, AUROC, FPR at 95% TPR, coverage,
accuracy on accepted images, the risk-coverage curve, and failure detection (AUROC of telling right
from wrong predictions, AURC and E-AURC), and a label-free accuracy estimate (ATC).

I.i.d. images are the positives of o.o.d. detection, correct predictions those of failure detection.
Scores reach torchmetrics as dense ranks scaled to [0, 1]: the order and every tie are kept exactly,
while raw scores (energies of 30 or more, say) would be squashed by the sigmoid torchmetrics applies
outside [0, 1] and tie in float32.
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


def expected_errors(scores: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Errors among the k highest-scoring images, k = 1..n, expected over the orders of tied scores.

    A detector that gives many images the same score (softmax confidence saturated at 1.0) does not
    order them; any fixed tie-break would credit or blame it for an order it never chose. Within a group
    of tied images the errors are spread evenly, which is the expectation over every order of the group.
    """
    order = scores.double().argsort(descending=True, stable=True)
    ranked, wrong = scores.double()[order], (~correct.bool())[order].double()
    _, group, counts = torch.unique_consecutive(ranked, return_inverse=True, return_counts=True)
    group_errors = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, group, wrong)
    ends = counts.cumsum(0)
    before = torch.cat([torch.zeros(1, dtype=torch.float64), group_errors.cumsum(0)[:-1]])
    position = torch.arange(1, len(ranked) + 1) - (ends - counts)[group]  # 1..g within its group
    return before[group] + position * group_errors[group] / counts[group]


def failure_detection(scores: torch.Tensor, correct: torch.Tensor) -> dict[str, float]:
    """How well a score tells right from wrong predictions (Jaeger et al. 2023; correct = positive).

    `failure_auroc`: AUROC of separating correct from wrong predictions (NaN when all are one kind).
    `aurc`: area under the risk-coverage curve, the error rate among the accepted images averaged over
    every coverage 1/n .. 1 (lower is better). `eaurc`: its excess over the best possible ordering, all
    errors last (Geifman et al. 2019), which takes out the share of errors itself.
    """
    n = len(scores)
    if n == 0:
        return {"failure_auroc": math.nan, "aurc": math.nan, "eaurc": math.nan}
    correct = correct.bool()
    risk = float((expected_errors(scores, correct) / torch.arange(1, n + 1, dtype=torch.float64)).mean())
    best = float((expected_errors((~correct).double().neg(), correct) / torch.arange(1, n + 1)).mean())
    both = 0 < int(correct.sum()) < n
    auroc = float(binary_auroc(_ranks(scores), correct.long())) if both else math.nan
    return {"failure_auroc": auroc, "aurc": risk, "eaurc": risk - best}


def atc_threshold(val_scores: torch.Tensor, val_acc: float) -> float:
    """Average Thresholded Confidence (Garg et al. 2022): the score above which the share of validation
    images equals the validation accuracy. The share of new images above it estimates their accuracy."""
    scores = val_scores.double().sort(descending=True).values
    k = round(val_acc * len(scores))  # images to keep above the threshold
    return -math.inf if k >= len(scores) else float(scores[k])


def atc_estimate(scores: torch.Tensor, cut: float) -> float:
    return float((scores.double() > cut).double().mean()) if len(scores) else math.nan
