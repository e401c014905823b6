"""The label-free accuracy estimators beside ATC and agreement: ATC-NE (Garg et al. 2022), DoC (Guillory
et al. 2021) and `bounded` (DoC within the bounds each reference's agreement sets), checked against
closed forms, and the bound itself checked on random classifiers, where it must always hold."""

import math

import pytest
import torch

from shapeshift.qc import estimates
from shapeshift.qc.estimates import (
    ATC_NE,
    BOUNDED,
    CONFIDENCE,
    DOC,
    NEG_ENTROPY,
    PREDICTED,
    REFERENCE_CONFIDENCE,
    REFERENCE_PREDICTED,
    Baseline,
    baseline,
    bounded_estimate,
    neg_entropy,
    per_image,
    per_set,
)


def test_negative_entropy_is_zero_for_certainty_and_minus_log_c_for_uniform():
    logits = torch.tensor([[100.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    h = neg_entropy(logits)
    assert h[0] == pytest.approx(0.0, abs=1e-30) and h[1] == pytest.approx(-math.log(3))
    p = torch.tensor([2.0, 0.0, 0.0]).softmax(0).double()
    assert h[2] == pytest.approx(float((p * p.log()).sum()))


def test_the_validation_baseline_reads_each_reference_against_the_labels():
    model = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.0, 1.0]])  # predicts 0 1 0 1
    refs = [torch.tensor([[1.0, 0.0]] * 4), torch.tensor([[0.0, 2.0]] * 4)]  # always 0; always 1
    labels = torch.tensor([0, 1, 0, 0])
    scores = {CONFIDENCE: torch.log(model.softmax(1).amax(1).double()), **per_image(model, refs)}
    base = baseline(scores, labels, scores[PREDICTED] == labels)
    assert base.acc == 0.75
    assert base.references[0][0] == 0.75 and base.references[1][0] == 0.25
    assert base.references[0][1] == pytest.approx(float(torch.tensor([1.0, 0.0]).softmax(0)[0]))
    # ATC-NE's threshold keeps the validation accuracy above it, as ATC's does.
    assert estimates.estimate(ATC_NE, scores, base) == 0.75


def test_doc_moves_with_the_fall_in_confidence():
    base = Baseline(acc=0.9, confidence=0.95)
    same = {CONFIDENCE: torch.full((10,), 0.95).log()}
    lower = {CONFIDENCE: torch.full((10,), 0.70).log()}
    assert estimates.estimate(DOC, same, base) == pytest.approx(0.9)
    assert estimates.estimate(DOC, lower, base) == pytest.approx(0.65)


def test_bounded_clips_doc_to_a_sure_reference_and_keeps_it_where_the_reference_is_unsure():
    n = 100
    predicted = torch.zeros(n, dtype=torch.long)  # a confident model predicting class 0 everywhere
    # A reference right on its validation images (acc 1.0, confidence 0.99) and as confident here: it says
    # 1 on every image, so the model, which says 0, is wrong on all of them whatever its confidence says.
    sure = (torch.ones(n, 1, dtype=torch.long), torch.full((n, 1), 0.99, dtype=torch.float64))
    assert bounded_estimate(0.98, predicted, *sure, [(1.0, 0.99)]) == pytest.approx(0.0)
    # The same reference unsure of itself (confidence 0.6 against 0.99: DoC 0.61, error 0.39): the bound
    # is agree + 0.39 = 0.39, so DoC 0.98 is clipped there.
    unsure = (sure[0], torch.full((n, 1), 0.6, dtype=torch.float64))
    assert bounded_estimate(0.98, predicted, *unsure, [(1.0, 0.99)]) == pytest.approx(0.39)
    # A reference that agrees on half, as unsure: [0.5 - 0.39, 0.5 + 0.39] holds DoC 0.7 unchanged.
    half = (torch.tensor([0, 1] * 50)[:, None], unsure[1])
    assert bounded_estimate(0.7, predicted, *half, [(1.0, 0.99)]) == pytest.approx(0.7)
    # Three references: the median of their clipped values, so one misjudging itself does not decide.
    three_pred = torch.cat([sure[0], sure[0], half[0]], 1)
    three_conf = torch.cat([sure[1], sure[1], unsure[1]], 1)
    value = bounded_estimate(0.98, predicted, three_pred, three_conf, [(1.0, 0.99)] * 3)
    assert value == pytest.approx(0.0)
    assert math.isnan(bounded_estimate(0.98, predicted, three_pred[:, :0], three_conf[:, :0], []))


@pytest.mark.parametrize("seed", range(20))
def test_the_bound_holds_for_any_classifiers(seed):
    """|acc_model - agree| <= 1 - acc_reference, exactly, for random predictions over 5 classes."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (200,), generator=g)
    model = torch.where(
        torch.rand(200, generator=g) < torch.rand(1, generator=g),
        labels,
        torch.randint(0, 5, (200,), generator=g),
    )
    ref = torch.where(
        torch.rand(200, generator=g) < torch.rand(1, generator=g),
        labels,
        torch.randint(0, 5, (200,), generator=g),
    )
    acc, acc_ref = (model == labels).double().mean(), (ref == labels).double().mean()
    agree = (model == ref).double().mean()
    assert abs(acc - agree) <= 1 - acc_ref + 1e-12


def test_per_set_reports_every_estimator_the_evidence_allows():
    logits = torch.tensor([[4.0, 0.0]] * 4 + [[4.0, 0.0]] * 4)  # predicts 0 everywhere, confidently
    labels = torch.tensor([0] * 4 + [1] * 4)  # right on the i.i.d. set, wrong on the swapped one
    ref = torch.tensor([[0.0, 4.0]] * 8)  # a reference predicting 1 everywhere
    ref[:4] = torch.tensor([4.0, 0.0])  # ... but 0 on the i.i.d. set (it reads the shape)
    scores = {CONFIDENCE: torch.log(logits.softmax(1).amax(1).double()), **per_image(logits, [ref])}
    correct = scores[PREDICTED] == labels
    iid = torch.arange(8) < 4
    base = baseline({k: v[iid] for k, v in scores.items()}, labels[iid], correct[iid])
    index = (~iid).long()
    reference = torch.log((scores[REFERENCE_PREDICTED][:, 0] == scores[PREDICTED]).double().clamp_min(1e-300))
    m = per_set(["iid", "position/s5"], index, correct, scores, base, reference)
    assert m["test/position/s5/acc_estimate/doc"] == pytest.approx(1.0)  # its confidence did not fall
    assert m["test/position/s5/acc_estimate/atc_ne"] == 1.0  # blind to confident errors, like ATC
    assert m["test/position/s5/acc_estimate/bounded"] == pytest.approx(0.0)  # the reference shows them
    assert m["test/acc_estimate_mae/bounded"] == pytest.approx(0.0)
    assert set(scores) >= {NEG_ENTROPY, REFERENCE_CONFIDENCE}
    assert BOUNDED in estimates.available(base, True) and BOUNDED not in estimates.available(base, False)
