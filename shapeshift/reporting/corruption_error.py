"""Corruption error against a baseline the user names (Hendrycks & Dietterich 2019, "Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations", section 3), from the runs' metrics alone.

With E(f, c, s) the top-1 error of model f on corruption c at severity s and E(f, clean) its i.i.d. error:

    CE(f, c)          = sum_s E(f, c, s) / sum_s E(base, c, s)
    relative CE(f, c) = sum_s [E(f, c, s) - E(f, clean)] / sum_s [E(base, c, s) - E(base, clean)]
    mCE               = the mean of CE over the 15 ImageNet-C corruptions (relative mCE likewise)

The paper's baseline is AlexNet; here it is a group of runs (`--baseline arch=cnn`, aug=none unless the
selector names one), its errors averaged over its seeds. Every run is scored against that mean, so the
baseline group's own mean CE is 1 exactly and its spread is the seeds'. A family whose denominator is not
positive (a baseline with no error, or whose error does not rise above its clean error) has no CE: it is
left out of the mean for every run alike, and the report names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shapeshift.reporting.runs import ReportError, Run
from shapeshift.runs.metric_keys import (
    CE,
    CORRUPTION_GROUPS,
    IID,
    RELATIVE_CE,
    SEVERITIES,
    is_number,
    mce_key,
    severity_key,
    test_key,
)

DEFAULT_BASELINE_AUG = "none"  # the augmentation every gain in the report is measured against


@dataclass
class Baseline:
    """The runs every CE is divided by, and what could not be scored against them."""

    selector: dict[str, str]
    runs: list[Run]
    families: list[str]  # scored: every severity in the baseline
    undefined: dict[str, list[str]] = field(default_factory=dict)  # "ce"/"relative_ce": families left out
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # group: its families the runs lack

    @property
    def label(self) -> str:
        return _label(self.selector)


def _label(selector: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in selector.items())


def parse_selector(text: str) -> dict[str, str]:
    """`arch=cnn` or `arch=cnn,aug=basic` (a config key such as `trainer.max_epochs=20` also selects)."""
    selector: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key or not value:
            raise ReportError(f"--baseline wants key=value[,key=value], e.g. arch=cnn; got {text!r}")
        selector[key.strip()] = value.strip()
    if not selector:
        raise ReportError("--baseline is empty; e.g. --baseline arch=cnn")
    selector.setdefault("aug", DEFAULT_BASELINE_AUG)
    return selector


def _matches(run: Run, selector: dict[str, str]) -> bool:
    for key, value in selector.items():
        if key in ("arch", "aug"):
            have = getattr(run, key)
        elif key == "seed":
            have = run.seed
        else:
            have = (run.keys or {}).get(key)
        if str(have) != value:
            return False
    return True


def _errors(run: Run, family: str) -> list[float] | None:
    accs = [run.metrics.get(severity_key(family, s)) for s in SEVERITIES]
    return [1.0 - a for a in accs] if all(is_number(a) for a in accs) else None


def _clean_error(run: Run) -> float | None:
    acc = run.metrics.get(test_key(IID, "acc"))
    return 1.0 - acc if is_number(acc) else None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def find_baseline(runs: Sequence[Run], text: str) -> Baseline:
    """The compared runs the selector picks; one arch x aug cell of them, or a one-line error."""
    selector = parse_selector(text)
    chosen = [r for r in runs if r.compared and _matches(r, selector)]
    label = _label(selector)
    if not chosen:
        cells = sorted({" ".join(r.group) for r in runs if r.compared})
        raise ReportError(
            f"--baseline {label}: no compared run matches (cells: {', '.join(cells) or 'none'})"
        )
    groups = sorted({r.group for r in chosen})
    if len(groups) > 1:
        names = ", ".join(f"{a} x {b}" for a, b in groups)
        raise ReportError(f"--baseline {label} matches {len(groups)} cells ({names}): name one more key")
    families = list(dict.fromkeys(f for r in chosen for f in r.families))
    families += sorted(
        {f for r in chosen for f in _families_in(r.metrics)} - set(families)
    )  # a run without its config: the families its metrics hold
    scored = [f for f in families if all(_errors(r, f) is not None for r in chosen)]
    return Baseline(selector, chosen, scored)


def _families_in(metrics: dict) -> set[str]:
    return {
        k.split("/")[1] for k in metrics if k.startswith("test/") and k.endswith(f"/s{SEVERITIES[-1]}/acc")
    }


def add_corruption_errors(runs: Sequence[Run], baseline: Baseline) -> Baseline:
    """Write `test/<family>/ce`, `test/<family>/relative_ce` and the group means (`test/mce`, ...) into
    every compared run's metrics, against the baseline's mean errors; returns the baseline with what it
    left out filled in."""
    base = baseline.runs
    base_clean = [_clean_error(r) for r in base]
    denominators: dict[str, dict[str, float]] = {CE: {}, RELATIVE_CE: {}}
    undefined: dict[str, list[str]] = {CE: [], RELATIVE_CE: []}
    for family in baseline.families:
        per_seed = [_errors(r, family) for r in base]
        total = _mean([sum(e) for e in per_seed])
        if total > 0:
            denominators[CE][family] = total
        else:
            undefined[CE].append(family)
        if all(c is not None for c in base_clean):
            rise = _mean([sum(x - c for x in e) for e, c in zip(per_seed, base_clean, strict=True)])
            if rise > 0:
                denominators[RELATIVE_CE][family] = rise
            else:
                undefined[RELATIVE_CE].append(family)
        else:
            undefined[RELATIVE_CE].append(family)
    baseline.undefined = {k: v for k, v in undefined.items() if v}
    scored = set(baseline.families)
    baseline.incomplete = {
        group: [f for f in members if f not in scored]
        for group, members in CORRUPTION_GROUPS.items()
        if any(f in scored for f in members) and not all(f in scored for f in members)
    }
    for run in runs:
        if run.compared:
            _score(run, denominators, baseline.incomplete)
    return baseline


def _score(run: Run, denominators: dict[str, dict[str, float]], incomplete: dict[str, list[str]]) -> None:
    clean = _clean_error(run)
    values: dict[str, dict[str, float]] = {CE: {}, RELATIVE_CE: {}}
    for family, denominator in denominators[CE].items():
        errors = _errors(run, family)
        if errors is not None:
            values[CE][family] = sum(errors) / denominator
    for family, denominator in denominators[RELATIVE_CE].items():
        errors = _errors(run, family)
        if errors is not None and clean is not None:
            values[RELATIVE_CE][family] = sum(e - clean for e in errors) / denominator
    for metric, by_family in values.items():
        for family, value in by_family.items():
            run.metrics[test_key(family, metric)] = value
        for group, members in CORRUPTION_GROUPS.items():
            if group in incomplete:
                continue  # a mean over part of the group would not be the field's mCE
            defined = [f for f in members if f in denominators[metric]]
            if defined and all(f in by_family for f in defined):
                run.metrics[mce_key(group, metric == RELATIVE_CE)] = _mean([by_family[f] for f in defined])
