"""Label-free accuracy estimates: what a set's accuracy probably is, from its images alone.

- `atc`: Average Thresholded Confidence (Garg et al. 2022): the share of images whose confidence (log
  max-softmax) exceeds the threshold fitted on i.i.d. validation images (`gate.atc_threshold`).
- `atc_ne`: the same with the negative entropy of the softmax as the score, the variant Garg et al. report
  as the better one.
- `agreement`: the references' mean probability for the model's predicted class, averaged over the
  images: the expected rate at which the references agree with the model (Jiang et al. 2022 estimate
  the error rate by the disagreement rate of independently trained models). Only the references kept for
  their invariance (qc/invariance.py) take part.
- `doc`: Difference of Confidences (Guillory et al. 2021): the validation accuracy minus the drop of the
  mean max-softmax confidence from the validation images to the set's.
- `bounded`: DoC held inside the bounds each reference's agreement sets. For any classifiers, a model's
  accuracy lies within the reference's error of its agreement with it: |acc - agree| <= 1 - acc_ref (where
  both are right they agree; where they agree, both are right or both wrong). The reference's accuracy is
  its own DoC on the same images, capped by what its predicted class shares allow if the images keep the
  validation class prior (`prior_cap`: a reference that calls every image a star is right on at most the
  stars). Per reference the model's DoC (capped alike) is clipped into that interval; the estimate is the
  median over the references, so one reference that misjudges itself does not decide. It keeps DoC where
  the references are unsure of themselves and follows the agreement where they are sure: on swapped shapes
  a shape-reading reference is sure and right, and the quadrant reader's confident errors show.

A model that reads the quadrant is confidently wrong on swapped shapes, so ATC, ATC-NE and DoC see none of
those errors; a reference that reads the shape disagrees on every one of them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from shapeshift.data import IID
from shapeshift.qc.gate import atc_estimate, atc_threshold
from shapeshift.runs.metric_keys import estimate_error_key, test_key

ATC = "atc"
ATC_NE = "atc_ne"
AGREEMENT = "agreement"
DOC = "doc"
BOUNDED = "bounded"
# The audit's estimate: the first of these the run can compute (docs/quality-control.md measures them all
# on the study's catalog: `bounded` lowest with references, DoC without).
DEFAULT = (BOUNDED, AGREEMENT, DOC, ATC_NE, ATC)
BLIND = "the model's own confidence: blind to confident errors; give reference= for more"
DESCRIPTION = {
    BOUNDED: "DoC held within the bounds the references' agreement sets",
    AGREEMENT: "agreement with the reference runs",
    DOC: f"DoC, {BLIND}",
    ATC_NE: f"ATC-NE, {BLIND}",
    ATC: f"ATC, {BLIND}",
}
Z95 = 1.959964  # the two-sided 95% normal quantile

# Per-image values the bank keeps beside the detectors' scores, for the estimates (names start with `_`:
# they are no detector). One value per image, or one per image and active reference.
CONFIDENCE = "_confidence"  # log max-softmax: ATC's and DoC's score
NEG_ENTROPY = "_neg_entropy"  # sum p log p: ATC-NE's score
PREDICTED = "_predicted"  # the model's class
REFERENCE_PREDICTED = "_reference_predicted"  # (N, references): each reference's class
REFERENCE_CONFIDENCE = "_reference_confidence"  # (N, references): each reference's max-softmax
PER_IMAGE = (CONFIDENCE, NEG_ENTROPY, PREDICTED, REFERENCE_PREDICTED, REFERENCE_CONFIDENCE)


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """sum_c p_c log p_c of the softmax, in float64 (0 for a one-hot softmax, -log C for a uniform one)."""
    log_p = logits.double().log_softmax(1)
    return (log_p.exp() * log_p).sum(1)


def per_image(logits: torch.Tensor, reference_logits: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The per-image values the estimators read, from the model's and the references' logits."""
    n = len(logits)
    out = {NEG_ENTROPY: neg_entropy(logits), PREDICTED: logits.argmax(1)}
    if reference_logits:
        out[REFERENCE_PREDICTED] = torch.stack([r.argmax(1) for r in reference_logits], 1)
        out[REFERENCE_CONFIDENCE] = torch.stack([r.double().softmax(1).amax(1) for r in reference_logits], 1)
    else:
        out[REFERENCE_PREDICTED] = torch.empty(n, 0, dtype=torch.long)
        out[REFERENCE_CONFIDENCE] = torch.empty(n, 0, dtype=torch.float64)
    return out


@dataclass
class Baseline:
    """What the estimators compare a set with, measured on the run's validation images."""

    acc: float = math.nan
    confidence: float = math.nan  # mean max-softmax
    atc_cut: float = math.nan
    atc_ne_cut: float = math.nan
    references: list[tuple[float, float]] = field(default_factory=list)  # (accuracy, mean max-softmax)
    prior: list[int] = field(default_factory=list)  # the validation labels per class


def baseline(
    scores: Mapping[str, torch.Tensor], labels: torch.Tensor, correct: torch.Tensor, num_classes: int
) -> Baseline:
    """The validation baseline from the validation images' per-image values and labels."""
    acc = float(correct.double().mean())
    prior = torch.bincount(labels, minlength=num_classes)
    refs = scores[REFERENCE_PREDICTED]
    return Baseline(
        acc=acc,
        confidence=float(scores[CONFIDENCE].double().exp().mean()),
        atc_cut=atc_threshold(scores[CONFIDENCE], acc),
        atc_ne_cut=atc_threshold(scores[NEG_ENTROPY], acc),
        references=[
            (
                float((refs[:, j] == labels).double().mean()),
                float(scores[REFERENCE_CONFIDENCE][:, j].double().mean()),
            )
            for j in range(refs.shape[1])
        ],
        prior=prior.tolist(),
    )


def agreement_estimate(reference_scores: torch.Tensor) -> float:
    """Mean probability the references give the model's predictions (`reference` scores are its log)."""
    return float(reference_scores.double().exp().mean()) if len(reference_scores) else math.nan


def doc_from_mean(mean_confidence: float, val_acc: float, val_confidence: float) -> float:
    """Validation accuracy minus the fall in mean max-softmax confidence, clipped to [0, 1]."""
    return min(1.0, max(0.0, val_acc - (val_confidence - mean_confidence)))


def doc_estimate(log_confidence: torch.Tensor, val_acc: float, val_confidence: float) -> float:
    """DoC from the images' log max-softmax (`log_confidence`)."""
    if not len(log_confidence):
        return math.nan
    return doc_from_mean(float(log_confidence.double().exp().mean()), val_acc, val_confidence)


def prior_cap(predicted: torch.Tensor, counts: Sequence[int]) -> float:
    """The highest accuracy a classifier can have on images whose classes keep the validation shares
    (`counts`: the validation labels per class): the sum over classes of min(share predicted, share
    there), plus the 95% sampling tolerance of the shares of two samples of these sizes (a balanced set
    drawn apart from the validation one is not exactly as balanced). 1.0 without counts."""
    n_val = sum(counts)
    if not n_val or not len(predicted):
        return 1.0
    prior = torch.tensor(counts, dtype=torch.float64) / n_val
    shares = torch.bincount(predicted, minlength=len(counts)).double()[: len(counts)] / len(predicted)
    overlap = float(torch.minimum(shares, prior).sum())
    slack = Z95 * 0.5 * float((prior * (1 - prior) * (1 / len(predicted) + 1 / n_val)).sqrt().sum())
    return min(1.0, overlap + slack)


def bounded_estimate(
    doc: float,
    predicted: torch.Tensor,
    reference_predicted: torch.Tensor,
    reference_confidence: torch.Tensor,
    references: Sequence[tuple[float, float]],
    prior: Sequence[int] = (),
) -> float:
    """`doc` (capped by `prior_cap`) clipped, per reference, into [agree - err, agree + err] (err: 1 - the
    reference's own DoC, capped alike); the median over references. NaN without references."""
    if not len(predicted) or not references or math.isnan(doc):
        return math.nan
    doc = min(doc, prior_cap(predicted, prior))
    clipped = []
    for j, (acc, conf) in enumerate(references):
        agree = float((reference_predicted[:, j] == predicted).double().mean())
        own = doc_from_mean(float(reference_confidence[:, j].double().mean()), acc, conf)
        err = 1.0 - min(own, prior_cap(reference_predicted[:, j], prior))
        clipped.append(min(max(doc, agree - err), agree + err))
    return statistics.median(clipped)


def estimate(name: str, scores: Mapping[str, torch.Tensor], base: Baseline, reference=None) -> float:
    """One estimator's estimate for the images whose per-image values are `scores` (`reference`: the
    reference detector's scores, for `agreement`)."""
    if name == ATC:
        return atc_estimate(scores[CONFIDENCE], base.atc_cut)
    if name == ATC_NE:
        return atc_estimate(scores[NEG_ENTROPY], base.atc_ne_cut)
    if name == DOC:
        return doc_estimate(scores[CONFIDENCE], base.acc, base.confidence)
    if name == AGREEMENT:
        return agreement_estimate(reference) if reference is not None else math.nan
    if name == BOUNDED:
        doc = doc_estimate(scores[CONFIDENCE], base.acc, base.confidence)
        return bounded_estimate(
            doc,
            scores[PREDICTED],
            scores[REFERENCE_PREDICTED],
            scores[REFERENCE_CONFIDENCE],
            base.references,
            base.prior,
        )
    raise ValueError(f"unknown estimator {name!r}")


def available(base: Baseline, has_reference: bool) -> list[str]:
    """The estimators this baseline can feed: DoC and ATC from the validation images, agreement and bounded
    with references."""
    names = []
    if not math.isnan(base.acc):
        names.append(DOC)
    if not math.isnan(base.atc_cut):
        names.append(ATC)
    if not math.isnan(base.atc_ne_cut):
        names.append(ATC_NE)
    if has_reference:
        names.append(AGREEMENT)
        if base.references and not math.isnan(base.acc):
            names.append(BOUNDED)
    return names


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
    scores: Mapping[str, torch.Tensor],
    base: Baseline,
    reference: torch.Tensor | None = None,
) -> dict[str, float]:
    """Per set, each estimator's estimate; over the o.o.d. sets (the catalog and `mix`), each one's mean
    absolute error against the measured accuracy. `scores`: the per-image values (PER_IMAGE) of every
    image; `reference`: the reference detector's scores, when there are references."""
    metrics: dict[str, float] = {}
    for name in available(base, reference is not None):
        errors = []
        for i, set_name in enumerate(set_names):
            member = index == i
            if member.any():
                part = {k: v[member] for k, v in scores.items()}
                value = estimate(name, part, base, None if reference is None else reference[member])
                metrics[test_key(set_name, "acc_estimate", name)] = value
                if set_name != IID:
                    errors.append(abs(value - float(correct[member].double().mean())))
        if errors:
            metrics[estimate_error_key(name)] = sum(errors) / len(errors)
    return metrics
