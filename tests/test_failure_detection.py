"""Failure detection: telling right from wrong predictions (failure AUROC, AURC, E-AURC), ties and
saturated scores included, the keys a run writes for every set and detector, and ATC's label-free
accuracy estimate."""

import itertools
import math

import pytest
import torch

from shapeshift.config.schema import QCConfig
from shapeshift.qc.bank import DetectorBank
from shapeshift.qc.detectors import log_prob_of, reference_score
from shapeshift.qc.estimates import CONFIDENCE, Baseline, per_set
from shapeshift.qc.gate import atc_estimate, atc_threshold, expected_errors, failure_detection

CORRECT = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1, 0, 1]).bool()  # 3 errors in 10


def aurc_by_hand(order_correct: list[bool]) -> float:
    wrong = [not c for c in order_correct]
    return sum(sum(wrong[:k]) / k for k in range(1, len(wrong) + 1)) / len(wrong)


def test_a_score_that_puts_every_error_last_is_the_oracle():
    m = failure_detection(CORRECT.double(), CORRECT)
    assert m["failure_auroc"] == 1.0 and m["eaurc"] == pytest.approx(0.0, abs=1e-12)
    assert m["aurc"] == pytest.approx(aurc_by_hand([True] * 7 + [False] * 3))  # (1/8 + 2/9 + 3/10) / 10


def test_a_score_that_puts_every_error_first_is_the_worst():
    m = failure_detection((~CORRECT).double(), CORRECT)
    assert m["failure_auroc"] == 0.0
    assert m["aurc"] == pytest.approx(aurc_by_hand([False] * 3 + [True] * 7))


def test_saturated_scores_are_worth_the_error_rate_not_a_lucky_order():
    """Every score tied (softmax confidence 1.0 everywhere): no ordering, so the risk is the error rate at
    every coverage, whatever order the images came in."""
    for correct in (CORRECT, CORRECT.flip(0)):
        m = failure_detection(torch.ones(10), correct)
        assert m["failure_auroc"] == 0.5
        assert m["aurc"] == pytest.approx(0.3)
        assert m["eaurc"] == pytest.approx(0.3 - aurc_by_hand([True] * 7 + [False] * 3))


def test_ties_count_as_the_mean_over_every_order_of_the_tied_images():
    scores = torch.tensor([0.9, 0.9, 0.9, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.0])
    groups = [list(g) for _, g in itertools.groupby(range(10), key=lambda i: float(scores[i]))]
    totals = torch.zeros(10, dtype=torch.float64)
    orders = list(itertools.product(*(itertools.permutations(g) for g in groups)))
    for order in orders:
        idx = [i for group in order for i in group]
        totals += (~CORRECT[idx]).double().cumsum(0)
    assert torch.allclose(expected_errors(scores, CORRECT), totals / len(orders))


def test_one_kind_of_prediction_has_no_failure_auroc():
    m = failure_detection(torch.rand(5), torch.ones(5).bool())
    assert math.isnan(m["failure_auroc"]) and m["aurc"] == 0.0 and m["eaurc"] == 0.0


def test_every_set_gets_failure_metrics_on_itself_pooled_with_the_iid_set():
    bank = DetectorBank(QCConfig(detectors=["msp", "energy"], gate="msp", novelty=None))
    torch.manual_seed(0)
    logits = torch.randn(30, 2)
    set_index = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)  # iid, rotation/s1, mix
    correct = torch.rand(30) > 0.3
    bank.update(set_index, correct, logits, {})  # no references: no inputs needed
    metrics, _ = bank.compute(["iid", "rotation/s1", "mix"])
    msp = logits.softmax(1).max(1).values.double()
    for name, pooled in (("iid", set_index == 0), ("rotation/s1", set_index <= 1), ("mix", set_index != 1)):
        expected = failure_detection(msp[pooled], correct[pooled])
        for key, value in expected.items():
            assert metrics[f"test/{name}/{key}/msp"] == pytest.approx(value), (name, key)
        assert f"test/{name}/eaurc/energy" in metrics
    assert "test/iid/auroc/msp" not in metrics  # novelty is measured against the i.i.d. set, not on it


def test_atc_keeps_the_validation_accuracy_above_its_threshold():
    val = torch.arange(100, dtype=torch.float64)  # distinct confidences
    cut = atc_threshold(val, 0.8)
    assert atc_estimate(val, cut) == 0.8  # on validation, the estimate is the validation accuracy
    assert atc_estimate(val - 50, cut) == 0.3  # confidence dropped on a shifted set: a lower estimate
    assert atc_estimate(val, atc_threshold(val, 1.0)) == 1.0  # all right: everything above


def test_accuracy_estimates_per_set_and_their_error_over_the_shifted_sets():
    index = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)  # iid, rotation/s1, mix
    correct = torch.tensor([1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0]).bool()
    confidence = torch.tensor([9, 8, 7, 6, 9, 1, 1, 1, 9, 8, 7, 1], dtype=torch.float64)
    scores = {CONFIDENCE: confidence}
    m = per_set(["iid", "rotation/s1", "mix"], index, correct, scores, Baseline(atc_cut=5.0))
    assert m["test/iid/acc_estimate/atc"] == 1.0
    assert m["test/rotation/s1/acc_estimate/atc"] == 0.25  # right: 1 of 4 correct
    assert m["test/mix/acc_estimate/atc"] == 0.75  # 0.25 too high
    assert m["test/acc_estimate_mae/atc"] == pytest.approx((0.0 + 0.25) / 2)  # the i.i.d. set not counted
    assert per_set(["iid"], index, correct, scores, Baseline()) == {}
    # With references: their mean probability for the predicted class, averaged, per set.
    agree = (
        torch.tensor([1, 1, 1, 1, 1, 0, 0, 0, 1, 0.5, 0.5, 0], dtype=torch.float64).clamp_min(1e-300).log()
    )
    m = per_set(["iid", "rotation/s1", "mix"], index, correct, scores, Baseline(), reference=agree)
    assert m["test/rotation/s1/acc_estimate/agreement"] == pytest.approx(0.25)
    assert m["test/mix/acc_estimate/agreement"] == pytest.approx(0.5)  # exactly the accuracy
    assert m["test/acc_estimate_mae/agreement"] == pytest.approx(0.0)
    assert "test/acc_estimate_mae/atc" not in m


def test_reference_score_is_the_log_of_the_references_mean_probability_for_the_prediction():
    logits = torch.tensor([[3.0, 0.0], [0.0, 3.0], [40.0, 0.0]])  # predicts 0, 1, 0
    agree = torch.tensor([[2.0, 0.0], [0.0, 2.0], [60.0, 0.0]])
    disagree = -agree
    expected = (agree.softmax(1)[:, 0:1].squeeze() + disagree.softmax(1)[:, 0:1].squeeze()) / 2
    expected[1] = (agree.softmax(1)[1, 1] + disagree.softmax(1)[1, 1]) / 2
    score = reference_score(logits, [agree, disagree])
    assert torch.allclose(score.exp(), expected.double(), atol=1e-12)
    # Far past float32's resolution the log is still exact, so confident agreements do not tie at 0.
    sure = log_prob_of(torch.tensor([[60.0, 0.0], [50.0, 0.0]]), torch.tensor([0, 0]))
    assert sure[0] < 0 and sure[1] < sure[0]
    assert reference_score(logits, [agree])[2] > reference_score(logits, [agree, disagree])[2]
