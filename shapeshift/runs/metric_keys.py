"""The metric keys of `metrics.json` and the maths on them: `test/<set>/<metric>[/<detector>]`, a set being
`iid`, `mix` or `<family>/s<severity>`; family means, the o.o.d. mean, rounding. Torch-free.

The one place keys are spelled: every module builds them with `test_key` and `severity_key`, and reads
them back with `SEVERITY_KEY`."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

# The i.i.d. test set's name: every data module has it, and metrics, detectors and reports key on it.
IID = "iid"
MIX = "mix"  # every family's severities drawn at random, one per image
OOD = "ood"  # not a set: the mean over every o.o.d. family and severity (RobustBench's convention)
SEVERITIES = (1, 2, 3, 4, 5)  # of every shift family; severity 0 is the i.i.d. set itself
SEVERITY_KEY = re.compile(r"^test/(?P<family>[^/]+)/s(?P<severity>\d+)/(?P<metric>.+)$")
SUMMARY_SETS = {IID, MIX, OOD}  # set names that are not o.o.d. families
SHORTCUT_FAMILY = "position"  # the study's test of the quadrant shortcut: shapes in the opposite quadrants


def shifted_set(family: str, severity: int) -> str:
    """`rotation/s3`; severity 0 is the i.i.d. set."""
    return IID if severity == 0 else f"{family}/s{severity}"


def test_key(set_name: str, metric: str, detector: str | None = None) -> str:
    """`test/<set>/<metric>`, or `test/<set>/<metric>/<detector>` for a detector's score."""
    return f"test/{set_name}/{metric}" + (f"/{detector}" if detector else "")


def severity_key(family: str, severity: int, metric: str = "acc") -> str:
    """A family's metric at one severity (0: the i.i.d. set's)."""
    return test_key(shifted_set(family, severity), metric)


# The shift=corruptions catalog's groups (conf/shift/corruptions.yaml). mCE is Hendrycks & Dietterich's
# (2019) mean over the 15 ImageNet-C corruptions; the held-out and geometric groups get the same mean,
# reported beside it, never inside it.
IMAGENET_C = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
HELD_OUT = ("speckle_noise", "gaussian_blur", "spatter", "saturate")  # ImageNet-C's validation corruptions
GEOMETRIC = ("translate", "scale", "rotation", "flip", "border_crop")
CORRUPTION_GROUPS = {"imagenet_c": IMAGENET_C, "held_out": HELD_OUT, "geometric": GEOMETRIC}
CE = "ce"  # a family's corruption error against a baseline run: test/<family>/ce
RELATIVE_CE = "relative_ce"  # the same on the rise of error over each model's clean error


def mce_key(group: str = "imagenet_c", relative: bool = False) -> str:
    """`test/mce` (the 15 ImageNet-C corruptions), `test/relative_mce`, `test/mce_held_out`, ..."""
    name = ("relative_mce" if relative else "mce") + ("" if group == "imagenet_c" else f"_{group}")
    return f"test/{name}"


SHORTCUT_KEY = severity_key(SHORTCUT_FAMILY, SEVERITIES[-1])  # test/position/s5/acc: the study's headline
# Keys of the whole test, not of one set.
CONSISTENCY_KEY = "test/consistency"  # Zhang (2019): the same class under two small shifts, i.i.d. images
RATIO_KEY = "test/ood_iid_ratio"
ESTIMATE_ERROR = "test/acc_estimate_mae/"  # + estimator: its mean absolute error over the o.o.d. sets


def estimate_error_key(estimator: str) -> str:
    return ESTIMATE_ERROR + estimator


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
        out[test_key(family, metric)] = sum(values) / len(values)
        every[metric] += values
    # RobustBench's "corruptions" convention: one mean over all families and severities.
    for metric, values in every.items():
        out[test_key(OOD, metric)] = sum(values) / len(values)
    ood, iid = test_key(OOD, "acc"), test_key(IID, "acc")
    if ood in out and metrics.get(iid):
        out[RATIO_KEY] = out[ood] / metrics[iid]
    return out


def tidy(metrics: dict) -> dict:
    """Six decimals (float32 metrics carry noise digits: 0.98000001907); non-finite numbers become null."""
    return {
        k: ((round(v, 6) if math.isfinite(v) else None) if isinstance(v, float) else v)
        for k, v in metrics.items()
    }
