"""Runs grouped by arch x aug: each metric's mean and interval, augmentation gains, and the columns and
rows of the report's tables in reading order."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from shapeshift.reporting.runs import Run
from shapeshift.reporting.stats import Stat, holm, mean_interval, paired_t_p, sign_test_p
from shapeshift.runs.metric_keys import (
    CE,
    CORRUPTION_GROUPS,
    IID,
    MIX,
    OOD,
    RELATIVE_CE,
    SEVERITY_KEY,
    SHORTCUT_FAMILY,
    SHORTCUT_KEY,
    SUMMARY_SETS,
    is_number,
    mce_key,
    shifted_set,
    test_key,
)

ARCH_ORDER = ("cnn", "maxpool", "gap", "resnet18", "resnet18_aa")
AUG_ORDER = ("none", "basic", "strong")
IDENTITY = ("arch", "aug", "seed", "epochs")
MAIN_COLUMNS = (  # (header, metrics key) of the terminal and report's main table
    (IID, test_key(IID, "acc")),
    (SHORTCUT_FAMILY, test_key(SHORTCUT_FAMILY, "acc")),
    (f"{SHORTCUT_FAMILY} s5", SHORTCUT_KEY),
    (OOD, test_key(OOD, "acc")),
    (MIX, test_key(MIX, "acc")),
)


def _rank(value: str, order: Sequence[str]) -> tuple:
    return (order.index(value), "") if value in order else (len(order), value)


def group_key_order(key: tuple[str, str]) -> tuple:
    arch, _, variant = key[0].partition(" ")  # "resnet18 image_size=63": the arch's place, then its variants
    natural = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", variant)]
    return (_rank(arch, ARCH_ORDER), _rank(key[1], AUG_ORDER), natural)


def families_of(runs: Sequence[Run]) -> list[str]:
    """Families in the catalog's order (from the runs' configs), then any others alphabetically."""
    order: list[str] = []
    for run in runs:
        order += [f for f in run.families if f not in order]
    seen = set()
    for run in runs:
        for key in run.metrics or {}:
            m = SEVERITY_KEY.match(key)
            parts = key.split("/")
            if m:
                seen.add(m["family"])
            elif (
                len(parts) == 3 and parts[0] == "test" and parts[2] == "acc" and parts[1] not in SUMMARY_SETS
            ):
                seen.add(parts[1])  # a family's mean
    return [f for f in order if f in seen] + sorted(seen - set(order))


def metric_keys(runs: Sequence[Run]) -> list[str]:
    """Every numeric metric of any finished run, in a reading order: val, test (i.i.d., families, mix,
    o.o.d., others), time, then anything else."""
    keys = {k for run in runs for k, v in (run.metrics or {}).items() if k not in IDENTITY and is_number(v)}
    families = families_of(runs)

    def order(key: str) -> tuple:
        if key.startswith("val/"):
            return (0, key)
        if key.startswith("test/"):
            name = key.split("/")[1]
            if name == IID:
                return (1, 0, key)
            if name in families:
                sev = SEVERITY_KEY.match(key)
                return (1, 1, families.index(name), int(sev["severity"]) if sev else 0, key)
            if name == MIX:
                return (1, 2, key)
            if name.startswith(OOD):
                return (1, 3, key)
            return (1, 4, key)
        if key.startswith("time/"):
            return (2, key)
        return (3, key)

    return sorted(keys, key=order)


@dataclass
class Group:
    arch: str
    aug: str
    runs: list[Run]
    stats: dict[str, Stat]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list:
        return sorted((r.seed for r in self.runs), key=lambda s: (s is None, s))


def summarize(runs: Sequence[Run]) -> list[Group]:
    """Compared runs grouped by arch x aug, each metric's mean and 95% interval over the group's runs."""
    finished = [r for r in runs if r.compared]
    keys = metric_keys(finished)
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in finished:
        groups.setdefault(run.group, []).append(run)
    out = []
    for key in sorted(groups, key=group_key_order):
        members = groups[key]
        stats = {m: s for m in keys if (s := mean_interval(r.metrics.get(m) for r in members)) is not None}
        out.append(Group(key[0], key[1], members, stats))
    return out


def gains(groups: Sequence[Group], metric: str = test_key(OOD, "acc"), baseline: str = "none") -> list[dict]:
    """Each augmentation's gain over `baseline` for the same arch: the difference of the means, and a
    95% interval over the seeds both groups share (paired by seed), when two or more are shared. `p` is the
    paired t-test's two-sided p, `p_holm` the same after Holm's correction over every row (each row is one
    more chance of a false "held")."""
    by_key = {(g.arch, g.aug): g for g in groups}
    rows = []
    for g in groups:
        base = by_key.get((g.arch, baseline))
        if g.aug == baseline or base is None or metric not in g.stats or metric not in base.stats:
            continue
        base_by_seed = {r.seed: r.metrics.get(metric) for r in base.runs if r.seed is not None}
        diffs = [
            r.metrics.get(metric) - base_by_seed[r.seed]
            for r in g.runs
            if r.seed in base_by_seed and is_number(r.metrics.get(metric)) and is_number(base_by_seed[r.seed])
        ]
        rows.append(
            {
                "arch": g.arch,
                "aug": g.aug,
                "gain": g.stats[metric].mean - base.stats[metric].mean,
                "paired": mean_interval(diffs),
                "diffs": diffs,
                "p": paired_t_p(diffs),
            }
        )
    for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
    return rows


def sign_tests(gain_rows: Sequence[dict]) -> list[dict]:
    """Per augmentation, a sign test over every seed pair of every arch in `gain_rows`: does it raise the
    metric more often than it lowers it? With 3 seeds a cell's t-test can rarely clear a correction;
    pooled over archs the pairs can. Holm-corrected over the augmentations."""
    augs = list(dict.fromkeys(r["aug"] for r in gain_rows))
    rows = []
    for aug in augs:
        members = [r for r in gain_rows if r["aug"] == aug]
        test = sign_test_p(d for r in members for d in r["diffs"])
        if test is not None:
            wins, pairs, p = test
            rows.append(
                {"aug": aug, "archs": [r["arch"] for r in members], "wins": wins, "pairs": pairs, "p": p}
            )
    for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
    return rows


def set_columns(groups: Sequence[Group], runs: Sequence[Run]) -> list[tuple[str, str]]:
    """(header, key) of the evaluation sets: i.i.d., each family's mean, mix, o.o.d."""
    keys = {k for g in groups for k in g.stats}
    cols = [(IID, test_key(IID, "acc"))]
    cols += [(f, test_key(f, "acc")) for f in families_of(runs)]
    cols += [(MIX, test_key(MIX, "acc")), (OOD, test_key(OOD, "acc"))]
    return [(h, k) for h, k in cols if k in keys]


def extra_keys(groups: Sequence[Group]) -> list[str]:
    """test/ metrics other than accuracies (ece, consistency, the ratio, ...) per family and summary set;
    per-severity values are in the CSV, detection and failure metrics in the quality-control tables."""
    keys: list[str] = []
    for g in groups:
        keys += [
            k
            for k in g.stats
            if k.startswith("test/")
            and not k.endswith("/acc")
            and k not in keys
            and not SEVERITY_KEY.match(k)
            and not any(f"/{m}/" in k for m in QC_METRICS)
            and not is_corruption_error(k)
        ]
    return keys


def is_corruption_error(key: str) -> bool:
    """A key of the corruption-error table: test/<family>/ce, .../relative_ce, test/mce..., not "other"."""
    return key.endswith((f"/{CE}", f"/{RELATIVE_CE}")) or key.removeprefix("test/").startswith(
        ("mce", "relative_mce")
    )


def ce_rows(groups: Sequence[Group], families: Sequence[str]) -> tuple[list[list[str]], list[list[str]]]:
    """(summary rows, per-family rows): per group the clean error and each corruption group's mCE and
    relative mCE; then each family's CE (relative CE below it in the CSV)."""
    mce_keys = [mce_key(g, rel) for g in CORRUPTION_GROUPS for rel in (False, True)]
    summary, per_family = [], []
    for g in groups:
        clean = g.stats.get(test_key(IID, "acc"))
        row = [g.arch, g.aug, str(g.n), f"{1 - clean.mean:.3f}" if clean else ""]
        summary.append(row + cells(g, mce_keys))
        per_family.append([g.arch, g.aug, str(g.n), *cells(g, [test_key(f, CE) for f in families])])
    return summary, per_family


QC_SETS = (
    shifted_set(SHORTCUT_FAMILY, 5),
    shifted_set("background_photo", 5),
    shifted_set("contrast", 5),
    MIX,
)  # the shifts a deployment gate must catch


# Per detector: o.o.d. detection (novelty) and failure detection (right vs wrong, i.i.d. set pooled in).
QC_METRICS = ("auroc", "fpr95", "failure_auroc", "aurc", "eaurc", "acc_estimate", "acc_estimate_mae")


def qc_tables(
    groups: Sequence[Group], metric: str = "auroc", gate: bool = True
) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per QC set: (set, header, rows) with each detector's `metric` (and, with `gate`, the gate's coverage
    and accepted accuracy), one row per group; sets no group measured are left out."""
    tables = []
    for name in QC_SETS:
        prefix = test_key(name, metric) + "/"
        detectors = sorted({k[len(prefix) :] for g in groups for k in g.stats if k.startswith(prefix)})
        if not detectors:
            continue
        keys = [prefix + d for d in detectors]
        header = ["arch", "aug", "n", *detectors]
        if gate:
            keys += [test_key(name, "coverage"), test_key(name, "accepted_acc")]
            header += ["gate coverage", "gate accepted acc"]
        tables.append((name, header, [[g.arch, g.aug, str(g.n), *cells(g, keys)] for g in groups]))
    return tables


def cells(group: Group, keys: Sequence[str]) -> list[str]:
    return [group.stats[k].cell() if k in group.stats else "" for k in keys]


def main_rows(groups: Sequence[Group]) -> tuple[list[str], list[list[str]]]:
    header = ["arch", "aug", "n", *(h for h, _ in MAIN_COLUMNS)]
    rows = [[g.arch, g.aug, str(g.n), *cells(g, [k for _, k in MAIN_COLUMNS])] for g in groups]
    return header, rows


def notes(runs: Sequence[Run]) -> list[str]:
    """Things that would make a mean misleading: a seed counted twice, one group on several data sets."""
    out = []
    seen: dict[tuple, list[Run]] = {}
    data: dict[tuple, set] = {}
    for r in runs:
        if r.compared:
            seen.setdefault((*r.group, r.seed), []).append(r)
            data.setdefault(r.group, set()).add(r.data or "?")
    for (arch, aug, seed), members in seen.items():
        if len(members) > 1 and seed is not None:
            where = ", ".join(f"`{m.path}`" for m in members)
            out.append(
                f"arch={arch} aug={aug} seed={seed} appears in {len(members)} runs (each counted): {where}"
            )
    for (arch, aug), names in data.items():
        if len(names) > 1:
            out.append(f"arch={arch} aug={aug} mixes runs on data {sorted(names)}")
    return out
