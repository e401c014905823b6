"""`metrics.json`: the one machine-readable result of a run. Reading it needs no torch or Lightning."""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from pathlib import Path

from shapeshift.run_dir import METRICS_FILE, write_json

_SEVERITY = re.compile(r"^test/(?P<family>.+)/s(?P<severity>\d+)/(?P<metric>acc|ece|auroc)$")


def aug_label(name: str, magnitude: float) -> str:
    """`basic`, or `basic-x2` when `aug.magnitude` is not 1: a strength sweep's runs stay apart in reports."""
    return name if magnitude == 1 else f"{name}-x{magnitude:g}"


def aggregate(metrics: dict[str, float]) -> dict[str, float]:
    """Add family means, the o.o.d. mean over every family and severity, and the o.o.d./i.i.d. ratio."""
    per_family: dict[tuple[str, str], list[float]] = defaultdict(list)
    for key, value in metrics.items():
        m = _SEVERITY.match(key)
        if m:
            per_family[m["family"], m["metric"]].append(value)
    out = dict(metrics)
    every: dict[str, list[float]] = defaultdict(list)
    for (family, metric), values in per_family.items():
        out[f"test/{family}/{metric}"] = sum(values) / len(values)
        every[metric] += values
    # RobustBench's "corruptions" convention: one mean over all families and severities.
    for metric, values in every.items():
        out[f"test/ood/{metric}"] = sum(values) / len(values)
    if "test/ood/acc" in out and metrics.get("test/iid/acc"):
        out["test/ood_iid_ratio"] = out["test/ood/acc"] / metrics["test/iid/acc"]
    return out


def tidy(metrics: dict) -> dict:
    """Six decimals (float32 metrics carry noise digits: 0.98000001907); non-finite numbers become null."""
    return {k: ((round(v, 6) if math.isfinite(v) else None) if isinstance(v, float) else v)
            for k, v in metrics.items()}


def write_metrics(run_dir: str | os.PathLike, metrics: dict, name: str = METRICS_FILE) -> Path:
    """Write atomically: a reader (or a resumed sweep) never sees half a file."""
    return write_json(Path(run_dir) / name, tidy(metrics))


def read_metrics(run_dir: str | os.PathLike, name: str = METRICS_FILE) -> dict:
    return json.loads((Path(run_dir) / name).read_text())
