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
    base = baseline(scores, labels, scores[PREDICTED] == labels, 2)
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


def test_a_reference_that_calls_every_image_one_class_bounds_little_on_balanced_images():
    """The GAP CNN on rotated shapes calls every one a star, as confidently as on validation: its DoC says it
    is right, the class prior says it is right on at most half (plus the shares' sampling tolerance). Its
    interval is then wide and the model's DoC mostly stands; without the prior the reference's false
    certainty would pull the estimate down to the agreement."""
    n = 100
    predicted = torch.tensor([0, 1] * 50)  # the model: balanced, and in fact right on every image
    collapsed = (torch.zeros(n, 1, dtype=torch.long), torch.full((n, 1), 0.99, dtype=torch.float64))
    refs = [(1.0, 0.99)]
    # At most half right, plus the sampling tolerance of a 100-image set's shares against 1,000 validation
    # labels' (1.96 x half the summed standard deviations of the two shares' difference).
    cap = 0.5 + 1.959964 * 0.5 * 2 * math.sqrt(0.25 * (1 / 100 + 1 / 1000))
    assert estimates.prior_cap(collapsed[0][:, 0], [500, 500]) == pytest.approx(cap)
    assert estimates.prior_cap(predicted, [500, 500]) == 1.0 and estimates.prior_cap(predicted, []) == 1.0
    assert bounded_estimate(0.98, predicted, *collapsed, refs) == pytest.approx(0.5)  # agree 0.5 +- 0.0
    # With the prior: agree 0.5 +- (1 - cap), so DoC 0.98 is clipped at 1.5 - cap (0.90), not at 0.5.
    assert bounded_estimate(0.98, predicted, *collapsed, refs, [500, 500]) == pytest.approx(1.5 - cap)
    # The model's own DoC is capped alike: a model calling everything a star is right on at most `cap`.
    unsure = (predicted[:, None], torch.full((n, 1), 0.5, dtype=torch.float64))  # balanced, unsure
    assert bounded_estimate(0.98, collapsed[0][:, 0], *unsure, refs, [500, 500]) == pytest.approx(cap)


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
    labels = torch.tensor([0, 1] * 4)  # balanced: four i.i.d. images, then four swapped ones
    swapped = torch.arange(8) >= 4
    model_class = torch.where(swapped, 1 - labels, labels)  # right on the i.i.d. set, wrong on the swapped
    logits = 4.0 * torch.nn.functional.one_hot(model_class, 2).float()  # equally confident everywhere
    ref = 4.0 * torch.nn.functional.one_hot(labels, 2).float()  # a reference that reads the shape: right
    scores = {CONFIDENCE: torch.log(logits.softmax(1).amax(1).double()), **per_image(logits, [ref])}
    correct = scores[PREDICTED] == labels
    iid = torch.arange(8) < 4
    base = baseline({k: v[iid] for k, v in scores.items()}, labels[iid], correct[iid], 2)
    index = (~iid).long()
    reference = torch.log((scores[REFERENCE_PREDICTED][:, 0] == scores[PREDICTED]).double().clamp_min(1e-300))
    m = per_set(["iid", "position/s5"], index, correct, scores, base, reference)
    assert m["test/position/s5/acc_estimate/doc"] == pytest.approx(1.0)  # its confidence did not fall
    assert m["test/position/s5/acc_estimate/atc_ne"] == 1.0  # blind to confident errors, like ATC
    assert m["test/position/s5/acc_estimate/bounded"] == pytest.approx(0.0)  # the reference shows them
    assert m["test/acc_estimate_mae/bounded"] == pytest.approx(0.0)
    assert set(scores) >= {NEG_ENTROPY, REFERENCE_CONFIDENCE}
    assert BOUNDED in estimates.available(base, True) and BOUNDED not in estimates.available(base, False)
