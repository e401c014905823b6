"""Mean over seeds and the half-width of a 95% Student-t interval: the numbers in every report cell."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from shapeshift.metric_keys import is_number

NO_INTERVAL = "—"

# Two-sided 95% quantiles t(0.975, df) of Student's t distribution, df = 1..30; 1.96 beyond.
T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile(df: int) -> float:
    """t(0.975, df): the multiplier of the standard error for a two-sided 95% interval."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return T975[df - 1] if df <= len(T975) else 1.96


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
