"""Reports from run folders alone (metrics.json and the Hydra files). Rule: no torch, Lightning or
Albumentations, and nothing of shapeshift but runs/ and console/ (tracking/ logs a report to W&B).

runs.py     find and read runs          stats.py    mean and 95% interval over seeds
tables.py   groups, gains, columns      writing.py  report.md, results.csv, the terminal table
plots.py    heatmap, severity curves, gains, corruption error
corruption_error.py  CE, relative CE and mCE against a baseline cell (Hendrycks & Dietterich 2019)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from shapeshift.reporting.corruption_error import Baseline, add_corruption_errors, find_baseline
from shapeshift.reporting.plots import draw_all
from shapeshift.reporting.runs import (
    ReportError,
    Run,
    collect,
    collect_csv,
    leave_out_unlearned,
    read_catalog,
)
from shapeshift.reporting.stats import Stat, mean_interval, t_quantile
from shapeshift.reporting.tables import Group, gains, main_rows, summarize
from shapeshift.reporting.writing import CSV_FILE, REPORT_FILE, render_markdown, text_table, write_csv
from shapeshift.runs.folder import METRICS_FILE

__all__ = [
    "Baseline",
    "Group",
    "ReportError",
    "Run",
    "Stat",
    "collect",
    "gains",
    "main_rows",
    "mean_interval",
    "print_summary",
    "report",
    "summarize",
    "t_quantile",
]


def report(
    roots: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    plots: bool = True,
    min_iid: float | None = None,
    metrics_file: str = METRICS_FILE,
    baseline: str | None = None,
    command: str | None = None,
    from_csv: str | os.PathLike | None = None,
    shift: str | os.PathLike | None = None,
) -> dict:
    """Write report.md, results.csv and the plots into `out_dir` (default: the first root). `baseline`
    (`arch=cnn`): the cell corruption errors and mCE are relative to; `command`: the command line that
    made the report, written into it so that it can be remade. `from_csv`: read the runs from a report's
    results.csv instead of their folders (no risk-coverage plot: its curves live in the folders);
    `shift`: a catalog file whose families give the severity axes and the family order."""
    catalog = read_catalog(shift) if shift else None
    if from_csv:
        roots = [str(from_csv)]
        runs = collect_csv(from_csv, catalog)
    else:
        roots = [str(r) for r in roots]
        runs = collect(roots, metrics_file)
        if catalog:
            for r in runs:
                r.families, r.catalog = list(catalog), dict(catalog)
    if min_iid is not None:
        leave_out_unlearned(runs, min_iid)
    base: Baseline | None = add_corruption_errors(runs, find_baseline(runs, baseline)) if baseline else None
    groups = summarize(runs)
    out = Path(out_dir or (Path(roots[0]).parent if from_csv else roots[0]))
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / CSV_FILE, runs)
    drawn, skipped = draw_all(out, groups, runs) if plots and groups else ({}, {})
    (out / REPORT_FILE).write_text(render_markdown(roots, runs, groups, drawn, skipped, base, command))
    return {"runs": runs, "groups": groups, "out": out, "plots": drawn, "skipped": skipped, "baseline": base}


def print_summary(result: dict) -> None:
    """The main table, what is missing or left out, and the files written."""
    runs, groups, out = result["runs"], result["groups"], result["out"]
    missing = [r for r in runs if not r.finished]
    print(text_table(*main_rows(groups)) if groups else "no run has finished yet")
    print(f"\n{len(runs)} runs, {len(runs) - len(missing)} finished, {len(missing)} without {METRICS_FILE}")
    for r in missing:
        print(f"  missing: {r.path}  ({r.problem})")
    for r in runs:
        if r.left_out:
            print(f"  left out: {r.path}  ({r.left_out})")
    written = [out / REPORT_FILE, out / CSV_FILE, *(out / name for name in result["plots"].values())]
    print("wrote " + ", ".join(str(p) for p in written))
