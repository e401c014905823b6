"""The tests behind the report's verdicts: paired t, sign test and Holm's correction, on numbers worked
out by hand."""

import pytest

from shapeshift.reporting.stats import holm, paired_t_p, sign_test_p
from shapeshift.reporting.tables import Group, gains, sign_tests


def test_paired_t_matches_the_worked_example():
    # diffs 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt 3) = 3.4641 on 2 df -> p = 0.07418
    assert paired_t_p([0.1, 0.2, 0.3]) == pytest.approx(0.07418, abs=1e-5)
    assert paired_t_p([0.05, 0.05, 0.05]) is None  # no spread: nothing to test against
    assert paired_t_p([0.1]) is None and paired_t_p([0.1, None]) is None


def test_sign_test_is_exact_and_leaves_ties_out():
    assert sign_test_p([0.01] * 12) == (12, 12, pytest.approx(2 * 0.5**12))  # 0.000488
    wins, pairs, p = sign_test_p([0.1, 0.2, -0.1, 0.0])  # the tie is not a pair
    assert (wins, pairs) == (2, 3) and p == pytest.approx(1.0)
    assert sign_test_p([0.0, 0.0]) is None


def test_holm_steps_down_and_stays_monotone():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> monotone: 0.03, 0.06, 0.06
    assert holm([0.04, 0.01, None, 0.03]) == pytest.approx([0.06, 0.03, None, 0.06])
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped
    assert holm([]) == []


class FakeRun:
    def __init__(self, seed, acc):
        self.seed, self.metrics = seed, {"test/ood/acc": acc}


def group(arch, aug, accs):
    from shapeshift.reporting.stats import mean_interval

    runs = [FakeRun(s, a) for s, a in enumerate(accs)]
    return Group(arch, aug, runs, {"test/ood/acc": mean_interval(accs)})


def test_gain_rows_carry_corrected_p_values_and_pool_into_a_sign_test():
    groups = [
        group("cnn", "none", [0.80, 0.81, 0.82]),
        group("cnn", "strong", [0.90, 0.93, 0.92]),  # diffs 0.10, 0.12, 0.10
        group("gap", "none", [0.70, 0.75, 0.80]),
        group("gap", "strong", [0.72, 0.74, 0.85]),  # diffs 0.02, -0.01, 0.05
    ]
    rows = gains(groups)
    assert [(r["arch"], r["aug"]) for r in rows] == [("cnn", "strong"), ("gap", "strong")]
    cnn, gap = rows
    assert cnn["diffs"] == pytest.approx([0.10, 0.12, 0.10])
    assert cnn["p"] == pytest.approx(paired_t_p([0.10, 0.12, 0.10]))
    assert cnn["p_holm"] == pytest.approx(2 * cnn["p"])  # the smaller of two p-values, doubled
    assert gap["p_holm"] == pytest.approx(max(gap["p"], 2 * cnn["p"]))
    (strong,) = sign_tests(rows)
    assert (strong["aug"], strong["wins"], strong["pairs"]) == ("strong", 5, 6)
    assert strong["p"] == pytest.approx(14 / 64) and strong["p_holm"] == strong["p"]  # 2 x (1 + 6) / 2^6
