"""The report's PNG plots (matplotlib, Agg): accuracy heatmaps, accuracy vs severity, augmentation gains."""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from shapeshift.reporting.runs import Run  # noqa: E402
from shapeshift.reporting.tables import (  # noqa: E402
    MAIN_COLUMNS,
    Group,
    families_of,
    gains,
    group_key_order,
    set_columns,
)
from shapeshift.runs.folder import RISK_COVERAGE_FILE, read_json  # noqa: E402
from shapeshift.runs.metric_keys import (  # noqa: E402
    CE,
    IID,
    OOD,
    SEVERITIES,
    is_number,
    mce_key,
    severity_points,
    test_key,
)

HEATMAP = "heatmap.png"
GAIN = "aug_gain.png"
RISK = "risk_coverage.png"
CE_PLOT = "corruption_error.png"
DPI = 110
# One colour per arch in every figure, so that a reader who learned "resnet18 is red" in one keeps it.
ARCH_COLORS = {
    "cnn": "tab:blue",
    "maxpool": "tab:orange",
    "gap": "tab:green",
    "resnet18": "tab:red",
    "resnet18_aa": "tab:purple",
}
EXTRA_COLORS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray", *plt.get_cmap("tab20b").colors)
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo")
# The value of an operation's argument that leaves the image as it is (shapeshift/data/shifts.py): where a
# family that varies only that argument has its i.i.d. point. Operations not listed (the corruptions
# catalog's) have no such value here, so their families stay on ordered steps.
IDENTITY_ARGS = {
    ("position", "fraction"): 0.0,
    ("affine", "scale"): 1.0,
    ("affine", "rotate"): 0.0,
    ("affine", "shear"): 0.0,
    ("pattern", "contrast"): 0.0,
    ("photo", "alpha"): 0.0,
    ("contrast", "factor"): 1.0,
    ("blur", "sigma"): 0.0,
    ("noise", "std"): 0.0,
    ("occlusion", "size"): 0.0,
}
ARG_UNITS = {("affine", "rotate"): "deg", ("affine", "shear"): "deg", ("blur", "sigma"): "px"}
ORDERED_STEPS = "severity (ordered steps, not a scale)"
# A curve's risk at full coverage is the error rate on its whole set: 1 - the run's accuracy there, up to
# the 6 decimals metrics.json keeps. A curve further off comes from another test than those metrics.
FULL_COVERAGE_TOLERANCE = 1e-3


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def arch_colors(groups: Sequence[Group]) -> dict[str, str | tuple]:
    """{arch label: colour}: the built-in archs' own, then the extra colours in the report's order for any
    other label (a variant such as "gap max_epochs=20"). Every figure gets all of a report's groups, so
    a label has one colour in all of them, whichever panels it appears in."""
    labels = sorted({g.arch for g in groups}, key=lambda a: group_key_order((a, "")))
    others = [a for a in labels if a not in ARCH_COLORS]
    return {a: ARCH_COLORS.get(a) or EXTRA_COLORS[others.index(a) % len(EXTRA_COLORS)] for a in labels}


def _save(fig: Figure, path: Path) -> Figure:
    """Write the PNG and close the figure, which the caller gets back to inspect."""
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # a safety net: nothing drawn is cut at the edge
    plt.close(fig)
    return fig


def _legend(fig: Figure, entries: dict[str, object]) -> None:
    """{label: handle} below the panels, never over a curve (the figure must use the constrained layout),
    in as many columns as fit the figure's width (an entry is about 5 pt a character, 40 pt of marker)."""
    if entries:
        per_column = 5.2 * max(map(len, entries)) + 40
        ncol = max(1, min(len(entries), int(fig.get_figwidth() * 72 // per_column)))
        fig.legend(
            entries.values(), entries, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False
        )


def _note(ax, lines: Sequence[str]) -> None:
    """Small text under the axes' x label, wrapped to the axes' width; the constrained layout makes room."""
    chars = max(30, int(ax.get_position().width * ax.figure.get_figwidth() * 72 / 3.9))
    text = "\n".join(textwrap.fill(line, chars, subsequent_indent="  ") for line in lines)
    ax.annotate(
        text,
        xy=(0.5, 0.0),
        xycoords=ax.xaxis.label,
        xytext=(0, -4),
        textcoords="offset points",
        ha="center",
        va="top",
        fontsize=7,
    )


def _augs(groups: Sequence[Group]) -> list[str]:
    out: list[str] = []
    for g in groups:
        if g.aug not in out:
            out.append(g.aug)
    return out


def _heatmap_columns(groups: Sequence[Group], runs: Sequence[Run]) -> list[tuple[str, str]]:
    """The evaluation sets, and after its family the main table's worst severity ("position s5"): a
    family's mean hides how far accuracy falls."""
    cols = set_columns(groups, runs)
    keys = {k for g in groups for k in g.stats}
    for header, key in MAIN_COLUMNS:
        if key in keys and (header, key) not in cols:
            family = test_key(key.split("/")[1], "acc")
            at = next((i + 1 for i, (_, k) in enumerate(cols) if k == family), len(cols))
            cols.insert(at, (header, key))
    return cols


def heatmap(path: Path, groups: Sequence[Group], runs: Sequence[Run]) -> Figure | None:
    """Arch x evaluation set, mean accuracy over seeds; one panel per augmentation."""
    cols = _heatmap_columns(groups, runs)
    if not cols:
        return None
    augs = _augs(groups)
    n_rows = max(sum(g.aug == a for g in groups) for a in augs)
    fig, axes = plt.subplots(
        len(augs),
        1,
        squeeze=False,
        sharex=True,
        layout="constrained",
        figsize=(2.0 + 0.85 * len(cols), 1.4 + (0.45 * n_rows + 0.5) * len(augs)),
    )
    image = None
    for ax, aug in zip(axes[:, 0], augs, strict=True):
        rows = [g for g in groups if g.aug == aug]
        values = [[g.stats[k].mean if k in g.stats else math.nan for _, k in cols] for g in rows]
        image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="black" if v > 0.6 else "white",
                    )
        ax.set_xticks(range(len(cols)), [h for h, _ in cols], rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), [f"{g.arch} (n={g.n})" for g in rows], fontsize=8)
        ax.set_title(f"aug={aug}: accuracy, mean over seeds", fontsize=9, wrap=True)
    fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.8, label="accuracy")
    return _save(fig, path)


def _scale_of(severities) -> tuple[str, list[float]] | None:
    """(axis label, x of the i.i.d. set and of severities 1-5) when each severity applies one and the same
    operation and only one of its numeric arguments changes, the others left at their identity (or without
    one, like a pattern's `kinds`): the points at that argument's value, the i.i.d. set at its identity.
    None otherwise (several operations or arguments, as `combined`; an operation with no known identity)."""
    if not isinstance(severities, list) or len(severities) != len(SEVERITIES):
        return None
    if not all(isinstance(s, dict) and len(s) == 1 for s in severities):
        return None
    (op,) = severities[0]
    args = [s.get(op) for s in severities]
    if not all(isinstance(a, dict) for a in args) or len({tuple(sorted(a)) for a in args}) != 1:
        return None
    varying = [k for k in args[0] if len({json.dumps(a[k], sort_keys=True) for a in args}) > 1]
    if len(varying) != 1:
        return None
    (arg,) = varying
    identity = IDENTITY_ARGS.get((op, arg))
    values = [a[arg] for a in args]
    if identity is None or not all(is_number(v) for v in values):
        return None
    for other in set(args[0]) - {arg}:  # held fixed: the i.i.d. set must have it too
        fixed = IDENTITY_ARGS.get((op, other))
        if fixed is not None and args[0][other] != fixed:
            return None
    xs = [identity, *map(float, values)]
    steps = [b - a for a, b in pairwise(xs)]
    if not (all(d > 0 for d in steps) or all(d < 0 for d in steps)):
        return None
    unit = ARG_UNITS.get((op, arg))
    return f"{op}.{arg}" + (f" ({unit})" if unit else ""), xs


def family_scales(runs: Sequence[Run], families: Sequence[str]) -> dict[str, tuple[str, list[float]]]:
    """{family: (axis label, x per severity 0-5)} for the families every one of `runs` that defines them
    (its catalog: the config's `shift.families`, or the report's `--shift` file) defines alike and
    `_scale_of` can put on a scale."""
    definitions: dict[str, set[str]] = {}
    for run in runs:
        for family, severities in run.catalog.items():
            definitions.setdefault(family, set()).add(json.dumps(severities, sort_keys=True))
    scales = {}
    for family in families:
        if len(definitions.get(family, ())) == 1:  # runs that disagree on a family share no scale
            scale = _scale_of(json.loads(next(iter(definitions[family]))))
            if scale is not None:
                scales[family] = scale
    return scales


def severity_curves(path: Path, groups: Sequence[Group], runs: Sequence[Run], aug: str) -> Figure | None:
    """Accuracy vs severity, one panel per family, one line per arch (severity 0 is the i.i.d. test set);
    the band is the 95% interval over seeds. A family whose severities set one argument of one operation
    is drawn at that argument's values (`family_scales`), the others at ordered steps 0-5."""
    families = families_of(runs)
    rows = [g for g in groups if g.aug == aug]
    if not families or not rows:
        return None
    scales = family_scales([r for g in rows for r in g.runs], families)
    colors = arch_colors(groups)
    ncols = min(5, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        squeeze=False,
        sharey=True,
        layout="constrained",
        figsize=(max(4.5, 3.0 * ncols), 2.8 * nrows + 0.9),
    )
    legend: dict[str, object] = {}
    for ax, family in zip(axes.flat, families, strict=False):
        label, at = scales.get(family, (ORDERED_STEPS, [float(k) for k in range(len(SEVERITIES) + 1)]))
        for g in rows:
            curve = severity_points(g.stats).get(family, [])
            points = [(k, s) for k, s in [(0, g.stats.get(test_key(IID, "acc"))), *curve] if s is not None]
            if len(points) < 2:
                continue
            xs = [at[k] if family in scales else float(k) for k, _ in points]
            means = [s.mean for _, s in points]
            color = colors[g.arch]
            (legend[g.arch],) = ax.plot(xs, means, marker="o", markersize=3, color=color, label=g.arch)
            if any(s.half is not None for _, s in points):
                halves = [s.half or 0.0 for _, s in points]
                ax.fill_between(  # an accuracy's interval ends at 0 and 1; t with 2-3 seeds runs past them
                    xs,
                    [max(0.0, m - h) for m, h in zip(means, halves, strict=True)],
                    [min(1.0, m + h) for m, h in zip(means, halves, strict=True)],
                    color=color,
                    alpha=0.15,
                    linewidth=0,
                )
        ax.set_title(family, fontsize=9, wrap=True)
        ax.set_ylim(0.0, 1.02)
        if family in scales:
            ticks = [f"{v:g}" for v in at]
            ticks[0] += f"\n{IID}"
            span = max(at) - min(at)
            crowded = min(abs(b - a) for a, b in pairwise(at)) < 0.08 * span
            ax.set_xticks(at, ticks, fontsize=6 if crowded else 7, rotation=90 if crowded else 0)
            if at[-1] < at[0]:  # contrast factor 1 -> 0.1: the harder severity stays on the right
                ax.invert_xaxis()
        else:
            ax.set_xticks(at, [IID, *map(str, SEVERITIES)], fontsize=7)
        ax.set_xlabel(label, fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(families) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    seeds_of = {g.arch: g.n for g in rows}
    _legend(fig, {f"{a} (n={seeds_of[a]})": legend[a] for a in colors if a in legend})  # every arch
    seeds = sorted({g.n for g in rows})
    n = f"{seeds[0]}" + (f"-{seeds[-1]}" if len(seeds) > 1 else "")
    fig.suptitle(
        f"Accuracy vs severity, aug={aug} (mean over {n} seed(s) per line, band: 95% interval clipped "
        "to [0, 1])",
        fontsize=10,
        wrap=True,
    )
    return _save(fig, path)


def unpaired_cells(groups: Sequence[Group], metric: str = test_key(OOD, "acc"), baseline: str = "none"):
    """[(arch, aug, why)] for each cell with `metric` that `gains` gives no row: nothing to subtract."""
    by_key = {(g.arch, g.aug): g for g in groups}
    paired = {(r["arch"], r["aug"]) for r in gains(groups, metric, baseline)}
    out = []
    for g in groups:
        if g.aug == baseline or metric not in g.stats or (g.arch, g.aug) in paired:
            continue
        base = by_key.get((g.arch, baseline))
        why = f"no aug={baseline} run of it to pair" if base is None else f"aug={baseline} has no {metric}"
        out.append((g.arch, g.aug, why))
    return out


def gain_bars(path: Path, groups: Sequence[Group], metric: str = test_key(OOD, "acc")) -> Figure | None:
    """Per arch, each augmentation's gain in `metric` over aug=none (error bar: paired 95% interval); the
    colour is the arch's, as in the other figures, the hatching tells the augmentations apart. A cell with
    no aug=none partner (a variant trained only with another augmentation) is named below the axes."""
    rows = gains(groups, metric)
    if not rows:
        return None
    colors = arch_colors(groups)
    archs: list[str] = []
    augs: list[str] = []
    for r in rows:
        archs += [r["arch"]] if r["arch"] not in archs else []
        augs += [r["aug"]] if r["aug"] not in augs else []
    by = {(r["arch"], r["aug"]): r for r in rows}
    width = 0.8 / len(augs)
    fig, ax = plt.subplots(layout="constrained", figsize=(max(4.5, 1.5 + 1.6 * len(archs)), 3.9))
    legend = {}
    for j, aug in enumerate(augs):
        xs, ys, errs, fill = [], [], [], []
        for i, arch in enumerate(archs):
            r = by.get((arch, aug))
            if r is None:
                continue
            xs.append(i + (j - (len(augs) - 1) / 2) * width)
            ys.append(r["gain"])
            paired = r["paired"]
            errs.append(paired.half if paired is not None and paired.half is not None else 0.0)
            fill.append(colors[arch])
        hatch = HATCHES[j % len(HATCHES)]
        ax.bar(xs, ys, width=width * 0.95, yerr=errs, capsize=3, color=fill, hatch=hatch, edgecolor="white")
        legend[f"aug={aug}"] = plt.Rectangle((0, 0), 1, 1, fc="lightgray", ec="black", hatch=hatch)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(
        range(len(archs)), [a.replace(" ", "\n") for a in archs], fontsize=8
    )  # variants: a line each
    ax.set_ylabel(f"gain in {metric.removeprefix('test/')}")
    ax.set_title("Gain over aug=none (difference of means; bars: paired 95% interval)", fontsize=9, wrap=True)
    ax.grid(axis="y", alpha=0.3)
    missing = unpaired_cells(groups, metric)
    if missing:
        _note(ax, ["No bar for:", *(f"{arch} x aug={aug} ({why})" for arch, aug, why in missing)])
    _legend(fig, legend)
    return _save(fig, path)


def _run_curve(run: Run) -> tuple[str, str, list[tuple[float, float]]] | str | None:
    """(set, gate, [(coverage, risk)] by coverage) from the run's risk_coverage.json, its full-coverage
    point the run's own 1 - accuracy on that set; None without a curve; a string says why the curve is
    left out (it does not end at the run's error rate: it was not measured in the test of its metrics)."""
    data = read_json(run.path / RISK_COVERAGE_FILE)
    if not isinstance(data, dict) or not data.get("risk"):
        return None
    coverage, risk = data.get("coverage"), data.get("risk")
    if not (isinstance(coverage, list) and isinstance(risk, list) and len(coverage) == len(risk)):
        return "its coverage and risk lists do not pair up"
    if not all(is_number(v) for v in [*coverage, *risk]):
        return "its curve holds a value that is not a number"
    points = sorted(zip(map(float, coverage), map(float, risk), strict=True))
    name = str(data.get("set"))
    acc = (run.metrics or {}).get(test_key(name, "acc"))
    if is_number(acc):
        error = 1.0 - acc
        if math.isclose(points[-1][0], 1.0):
            if abs(points[-1][1] - error) > FULL_COVERAGE_TOLERANCE:
                return (
                    f"its curve ends at risk {points[-1][1]:.3f}, its metrics give 1 - {name} acc = "
                    f"{error:.3f}: not this test's curve"
                )
            points[-1] = (1.0, error)
        else:
            points.append((1.0, error))
    return name, str(data.get("detector")), points


def _mean_curve(curves: Sequence[list[tuple[float, float]]]) -> tuple[list[float], list[float]]:
    """Each curve interpolated onto one coverage grid (every run's points in the range all of them
    cover), then averaged point by point."""
    lo, hi = max(c[0][0] for c in curves), min(c[-1][0] for c in curves)
    grid = sorted({x for c in curves for x, _ in c if lo <= x <= hi})
    if not grid:
        return [], []
    values = [np.interp(grid, [x for x, _ in c], [y for _, y in c]) for c in curves]
    return grid, [float(v) for v in np.mean(values, axis=0)]


def risk_coverage(path: Path, groups: Sequence[Group]) -> Figure | None:
    """The gate's risk (error rate among accepted images) against coverage, mean over each group's seeds;
    one panel per augmentation, read from each run's risk_coverage.json. Runs may store different coverage
    grids: each curve is interpolated onto a common one, and at full coverage the line is the mean of the
    runs' 1 - accuracy on the curve's set. A curve that does not end there is left out and named."""
    curves: dict[str, dict[tuple[str, str], list[list[tuple[float, float]]]]] = {}
    left_out: dict[str, list[str]] = {}
    sets, gates = set(), set()
    for g in groups:
        for run in g.runs:
            got = _run_curve(run)
            if isinstance(got, str):
                left_out.setdefault(g.aug, []).append(f"{g.arch} seed {run.seed}: {got}")
            elif got is not None:
                name, gate, points = got
                curves.setdefault(g.aug, {}).setdefault((g.arch, name), []).append(points)
                sets.add(name)
                gates.add(gate)
    if not curves:
        return None
    # Each run chose its own gate: name them all, not the last one read.
    which = f"{', '.join(sorted(sets))}; each run's own gate: {', '.join(sorted(gates))}"
    colors = arch_colors(groups)
    panels = [aug for aug in _augs(groups) if aug in curves or aug in left_out]
    fig, axes = plt.subplots(
        1,
        len(panels),
        squeeze=False,
        sharey=True,
        layout="constrained",
        figsize=(max(4.5, 3.6 * len(panels)), 3.6),
    )
    legend: dict[str, object] = {}
    for ax, aug in zip(axes[0], panels, strict=True):
        by_line = curves.get(aug, {})
        for (arch, name), runs in by_line.items():
            label = arch if len(sets) == 1 else f"{arch}, {name}"
            grid, mean = _mean_curve(runs)
            if grid:
                (legend[label],) = ax.plot(
                    grid, mean, marker="o", markersize=2, color=colors[arch], label=label
                )
        n = sorted({len(runs) for runs in by_line.values()}) or [0]
        ax.set_title(f"aug={aug}, n={n[0]}" + (f"-{n[-1]}" if len(n) > 1 else ""), fontsize=9, wrap=True)
        ax.set_xlabel("coverage (share accepted)")
        ax.grid(alpha=0.3)
        if aug in left_out:
            _note(ax, ["Left out:", *left_out[aug]])
    axes[0, 0].set_ylabel("risk (error among accepted)")
    order = [a if len(sets) == 1 else f"{a}, {s}" for a in colors for s in sorted(sets)]
    _legend(fig, {a: legend[a] for a in dict.fromkeys(order) if a in legend})
    fig.suptitle(f"Risk vs coverage ({which}; lower is better)", fontsize=10, wrap=True)
    return _save(fig, path)


def corruption_error(path: Path, groups: Sequence[Group], runs: Sequence[Run]) -> Figure | None:
    """Group x family CE against the report's baseline (1 = the baseline's error, centred in the colour
    map: blue better, red worse), mCE first; nothing when the report had no --baseline."""
    cols = [("mCE", mce_key())] + [(f, test_key(f, CE)) for f in families_of(runs)]
    cols = [(h, k) for h, k in cols if any(k in g.stats for g in groups)]
    if not cols:
        return None
    values = [[g.stats[k].mean if k in g.stats else math.nan for _, k in cols] for g in groups]
    finite = [v for row in values for v in row if not math.isnan(v)]
    spread = max(0.25, *(abs(v - 1.0) for v in finite))
    fig, ax = plt.subplots(layout="constrained", figsize=(2.5 + 0.55 * len(cols), 1.2 + 0.38 * len(groups)))
    image = ax.imshow(values, vmin=1.0 - spread, vmax=1.0 + spread, cmap="RdBu_r", aspect="auto")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(len(cols)), [h for h, _ in cols], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(groups)), [f"{g.arch} x {g.aug} (n={g.n})" for g in groups], fontsize=8)
    ax.set_title("Corruption error against the baseline (mean over seeds; lower is better)", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="CE")
    return _save(fig, path)


def draw_all(
    out: Path, groups: Sequence[Group], runs: Sequence[Run]
) -> tuple[dict[str, str], dict[str, str]]:
    """Draw every plot the data allow; returns ({title: file}, {file: why it was not drawn})."""
    drawn: dict[str, str] = {}
    skipped: dict[str, str] = {}
    if heatmap(out / HEATMAP, groups, runs):
        drawn["Accuracy per arch and evaluation set"] = HEATMAP
    else:
        skipped[HEATMAP] = "no evaluation set in the metrics"
    for aug in _augs(groups):
        name = f"severity_{_safe(aug)}.png"
        if severity_curves(out / name, groups, runs, aug):
            drawn[f"Accuracy vs severity, aug={aug}"] = name
        else:
            skipped[name] = "no o.o.d. family in the metrics"
    if corruption_error(out / CE_PLOT, groups, runs):
        drawn["Corruption error per family against the baseline"] = CE_PLOT
    if risk_coverage(out / RISK, groups):
        drawn["Risk vs coverage of the quality-control gate"] = RISK
    elif any((r.path / RISK_COVERAGE_FILE).is_file() for g in groups for r in g.runs):
        skipped[RISK] = "no run's risk_coverage.json ends at its own 1 - accuracy (not its test's curve)"
    if gain_bars(out / GAIN, groups):
        drawn["Gain of each augmentation over none (test/ood/acc)"] = GAIN
    else:
        skipped[GAIN] = "needs aug=none and another augmentation of the same arch, with test/ood/acc"
    return drawn, skipped
