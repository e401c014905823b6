"""The report's statistics: mean over seeds with the half-width of a 95% Student-t interval (every
report cell), and the tests behind a gain table's verdicts: a paired t-test per cell, a sign test over
every seed pair of an augmentation, and Holm's correction for testing many cells at once."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import scipy.stats

from shapeshift.runs.metric_keys import is_number

NO_INTERVAL = "—"


def t_quantile(df: int) -> float:
    """t(0.975, df): the multiplier of the standard error for a two-sided 95% interval."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return float(scipy.stats.t.ppf(0.975, df))


@dataclass(frozen=True)
class Stat:
    """Mean over seeds, the 95% interval's half-width (None for one value) and the number of values."""

    n: int
    mean: float
    half: float | None

    def cell(self, digits: int = 3) -> str:
        interval = NO_INTERVAL if self.half is None else f"{self.half:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {interval}"


def mean_interval(values: Iterable[float]) -> Stat | None:
    """Mean +- t(0.975, n-1) * sd / sqrt(n) (sample sd); None when there is no value."""
    xs = [float(v) for v in values if is_number(v)]
    if not xs:
        return None
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return Stat(1, mean, None)
    half = t_quantile(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return Stat(len(xs), mean, half)


def paired_t_p(diffs: Iterable[float]) -> float | None:
    """Two-sided p of a paired t-test (H0: mean difference 0) over per-seed differences; None with fewer
    than two, or when they are all equal up to float rounding (no spread to test against)."""
    xs = [float(d) for d in diffs if is_number(d)]
    if len(xs) < 2 or max(xs) - min(xs) <= 1e-9 * max(1.0, max(abs(x) for x in xs)):
        return None
    return float(scipy.stats.ttest_1samp(xs, 0.0).pvalue)


def sign_test_p(diffs: Iterable[float]) -> tuple[int, int, float] | None:
    """(wins, pairs, two-sided p) of a sign test: H0 says a positive and a negative difference are equally
    likely. Ties (difference 0) are left out. Exact binomial; None without pairs."""
    xs = [float(d) for d in diffs if is_number(d) and d != 0]
    if not xs:
        return None
    wins = sum(d > 0 for d in xs)
    return wins, len(xs), float(scipy.stats.binomtest(wins, len(xs), 0.5).pvalue)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (family-wise error): the k-th smallest of m p-values times (m - k + 1),
    made monotone and capped at 1. None stays None and does not count towards m. scipy has no Holm;
    `scipy.stats.false_discovery_control` controls the false discovery rate, a weaker promise."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(order):
        running = max(running, min(1.0, p * (len(order) - k)))
        out[i] = running
    return out
