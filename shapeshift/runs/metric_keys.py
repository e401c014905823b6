"""The metric keys of `metrics.json` and the maths on them: `test/<set>/<metric>`, a set being `iid`, `mix`
or `<family>/s<severity>`; family means, the o.o.d. mean, rounding. Torch-free."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

# The i.i.d. test set's name: every data module has it, and metrics, detectors and reports key on it.
IID = "iid"
SEVERITY_KEY = re.compile(r"^test/(?P<family>[^/]+)/s(?P<severity>\d+)/(?P<metric>.+)$")
SUMMARY_SETS = {IID, "mix", "ood"}  # set names that are not o.o.d. families


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def severity_points(metrics: dict, metric: str = "acc") -> dict[str, list[tuple[int, Any]]]:
    """{family: [(severity, value), ...]} for one metric, severities ascending."""
    curves: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for key, value in metrics.items():
        m = SEVERITY_KEY.match(key)
        if m and m["metric"] == metric and value is not None:
            curves[m["family"]].append((int(m["severity"]), value))
    return {f: sorted(points, key=lambda p: p[0]) for f, points in curves.items()}


def aggregate(metrics: dict[str, float]) -> dict[str, float]:
    """Add family means, the o.o.d. mean over every family and severity, and the o.o.d./i.i.d. ratio."""
    per_family: dict[tuple[str, str], list[float]] = defaultdict(list)
    for key, value in metrics.items():
        m = SEVERITY_KEY.match(key)
        if m and is_number(value):
            per_family[m["family"], m["metric"]].append(value)
    out = dict(metrics)
    every: dict[str, list[float]] = defaultdict(list)
    for (family, metric), values in per_family.items():
        out[f"test/{family}/{metric}"] = sum(values) / len(values)
        every[metric] += values
    # RobustBench's "corruptions" convention: one mean over all families and severities.
    for metric, values in every.items():
        out[f"test/ood/{metric}"] = sum(values) / len(values)
    if "test/ood/acc" in out and metrics.get(f"test/{IID}/acc"):
        out["test/ood_iid_ratio"] = out["test/ood/acc"] / metrics[f"test/{IID}/acc"]
    return out


def tidy(metrics: dict) -> dict:
    """Six decimals (float32 metrics carry noise digits: 0.98000001907); non-finite numbers become null."""
    return {
        k: ((round(v, 6) if math.isfinite(v) else None) if isinstance(v, float) else v)
        for k, v in metrics.items()
    }
