"""The report's PNG plots (matplotlib, Agg): accuracy heatmaps, accuracy vs severity, augmentation gains."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shapeshift.metric_keys import severity_points  # noqa: E402
from shapeshift.reporting.runs import Run  # noqa: E402
from shapeshift.reporting.tables import Group, families_of, gains, set_columns  # noqa: E402
from shapeshift.run_dir import RISK_COVERAGE_FILE, read_json  # noqa: E402

HEATMAP = "heatmap.png"
GAIN = "aug_gain.png"
RISK = "risk_coverage.png"
DPI = 110


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _augs(groups: Sequence[Group]) -> list[str]:
    out: list[str] = []
    for g in groups:
        if g.aug not in out:
            out.append(g.aug)
    return out


def heatmap(path: Path, groups: Sequence[Group], runs: Sequence[Run]) -> bool:
    """Arch x evaluation set, mean accuracy over seeds; one panel per augmentation."""
    cols = set_columns(groups, runs)
    if not cols:
        return False
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
        ax.set_title(f"aug={aug}: accuracy, mean over seeds", fontsize=9)
    fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.8, label="accuracy")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def severity_curves(path: Path, groups: Sequence[Group], runs: Sequence[Run], aug: str) -> bool:
    """Accuracy vs severity, one panel per family, one line per arch (severity 0 is the i.i.d. test set);
    the band is the 95% interval over seeds."""
    families = families_of(runs)
    rows = [g for g in groups if g.aug == aug]
    if not families or not rows:
        return False
    ncols = min(5, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, squeeze=False, sharey=True, figsize=(3.0 * ncols, 2.6 * nrows + 0.6)
    )
    for ax, family in zip(axes.flat, families, strict=False):
        for g in rows:
            curve = severity_points(g.stats).get(family, [])
            points = [(k, s) for k, s in [(0, g.stats.get("test/iid/acc")), *curve] if s is not None]
            if len(points) < 2:
                continue
            xs = [k for k, _ in points]
            means = [s.mean for _, s in points]
            (line,) = ax.plot(xs, means, marker="o", markersize=3, label=g.arch)
            if any(s.half is not None for _, s in points):
                halves = [s.half or 0.0 for _, s in points]
                ax.fill_between(
                    xs,
                    [m - h for m, h in zip(means, halves, strict=True)],
                    [m + h for m, h in zip(means, halves, strict=True)],
                    color=line.get_color(),
                    alpha=0.15,
                    linewidth=0,
                )
        ax.set_title(family, fontsize=9)
        ax.set_ylim(0.0, 1.02)
        ax.set_xticks(range(0, 6), ["iid", "1", "2", "3", "4", "5"], fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(families) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"Accuracy vs severity, aug={aug} (mean over seeds, band: 95% interval)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def gain_bars(path: Path, groups: Sequence[Group], metric: str = "test/ood/acc") -> bool:
    """Per arch, each augmentation's gain in `metric` over aug=none (error bar: paired 95% interval)."""
    rows = gains(groups, metric)
    if not rows:
        return False
    archs: list[str] = []
    augs: list[str] = []
    for r in rows:
        archs += [r["arch"]] if r["arch"] not in archs else []
        augs += [r["aug"]] if r["aug"] not in augs else []
    by = {(r["arch"], r["aug"]): r for r in rows}
    width = 0.8 / len(augs)
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(archs), 3.6))
    for j, aug in enumerate(augs):
        xs, ys, errs = [], [], []
        for i, arch in enumerate(archs):
            r = by.get((arch, aug))
            if r is None:
                continue
            xs.append(i + (j - (len(augs) - 1) / 2) * width)
            ys.append(r["gain"])
            paired = r["paired"]
            errs.append(paired.half if paired is not None and paired.half is not None else 0.0)
        ax.bar(xs, ys, width=width * 0.95, yerr=errs, capsize=3, label=f"aug={aug}")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(archs)), archs, fontsize=8)
    ax.set_ylabel(f"gain in {metric.removeprefix('test/')}")
    ax.set_title("Gain over aug=none (difference of means; bars: paired 95% interval)", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def risk_coverage(path: Path, groups: Sequence[Group]) -> bool:
    """The gate's risk (error rate among accepted images) against coverage, mean over each group's seeds;
    one panel per augmentation, read from each run's risk_coverage.json."""
    curves: dict[str, dict[str, list[list[float]]]] = {}
    coverage, which = None, None
    for g in groups:
        for run in g.runs:
            data = read_json(run.path / RISK_COVERAGE_FILE)
            if data and data.get("risk"):
                curves.setdefault(g.aug, {}).setdefault(g.arch, []).append(data["risk"])
                coverage, which = data["coverage"], f"{data.get('set')}, gate {data.get('detector')}"
    if not curves:
        return False
    fig, axes = plt.subplots(1, len(curves), squeeze=False, sharey=True, figsize=(3.6 * len(curves), 3.2))
    for ax, (aug, by_arch) in zip(axes[0], curves.items(), strict=True):
        for arch, risks in by_arch.items():
            mean = [sum(r[i] for r in risks) / len(risks) for i in range(len(coverage))]
            ax.plot(coverage, mean, marker="o", markersize=2, label=f"{arch} (n={len(risks)})")
        ax.set_title(f"aug={aug}", fontsize=9)
        ax.set_xlabel("coverage (share accepted)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    axes[0, 0].set_ylabel("risk (error among accepted)")
    fig.suptitle(f"Risk vs coverage ({which}; lower is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


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
    if risk_coverage(out / RISK, groups):
        drawn["Risk vs coverage of the quality-control gate"] = RISK
    if gain_bars(out / GAIN, groups):
        drawn["Gain of each augmentation over none (test/ood/acc)"] = GAIN
    else:
        skipped[GAIN] = "needs aug=none and another augmentation of the same arch, with test/ood/acc"
    return drawn, skipped
