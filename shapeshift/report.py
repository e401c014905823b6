"""Collect the runs of one or more sweeps into one report: tables, a CSV and plots.

    python -m shapeshift.report outputs/sweeps/2026-01-01/12-00-00-000000
    python -m shapeshift.report sweep_machine_a sweep_machine_b      # written into the first folder
    python -m shapeshift.report <dirs> --min-iid 0.97                # leave out runs that did not learn
    python -m shapeshift.report <dirs> --baseline arch=cnn           # shift=corruptions: CE and mCE
    python -m shapeshift.report --from-csv docs/study/results.csv --shift conf/shift/default.yaml
                                                                     # remade from a report's CSV

Reads only each run's `metrics.json`, `run.json` and `.hydra/*.yaml` (no torch: it starts in a moment,
wherever the folders were copied). Runs are grouped by arch x aug; each group shows the mean over seeds
and a 95% Student-t interval. Unfinished runs are listed with the first line of their `error.txt`. With
`--min-iid`, a finished run below that i.i.d. test accuracy is left out of every table and plot and
listed with its accuracy; `results.csv` keeps every run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from shapeshift.reporting import ReportError, print_summary, report
from shapeshift.runs.folder import METRICS_FILE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shapeshift.report",
        description="Summarise the runs of one or more sweep folders: report.md, results.csv and PNG plots, "
        "written into the first folder (or --out).",
    )
    parser.add_argument("dirs", nargs="*", help="sweep or run folders, searched recursively")
    parser.add_argument(
        "--from-csv",
        metavar="FILE",
        help="read the runs from a report's results.csv instead of their folders (a report made where the "
        "runs are gone: every table and plot but risk vs coverage, whose curves live in the folders)",
    )
    parser.add_argument(
        "--shift",
        metavar="FILE",
        help="the catalog the runs were evaluated on (e.g. conf/shift/default.yaml): family order and "
        "severity axes; default: each run's own config (none with --from-csv)",
    )
    parser.add_argument("--out", help="write the report here instead of into the first folder")
    parser.add_argument("--no-plots", action="store_true", help="tables and CSV only")
    parser.add_argument(
        "--min-iid",
        type=float,
        metavar="ACC",
        help="leave out runs whose i.i.d. test accuracy is below ACC (e.g. 0.97): like with like",
    )
    parser.add_argument(
        "--baseline",
        metavar="KEY=VALUE[,...]",
        help="the cell that corruption errors (CE, relative CE, mCE; Hendrycks & Dietterich 2019) are "
        "divided by, e.g. arch=cnn (aug=none unless given) or arch=cnn,aug=basic",
    )
    parser.add_argument(
        "--metrics",
        default=METRICS_FILE,
        metavar="FILE",
        help="each run's results file: metrics.json (training), or evaluation.json written by "
        "`shapeshift.evaluate` (re-evaluated checkpoints)",
    )
    args = parser.parse_args(argv)
    if bool(args.dirs) == bool(args.from_csv):
        parser.error("give sweep folders or --from-csv FILE (one of the two)")
    try:
        result = report(
            args.dirs,
            args.out,
            plots=not args.no_plots,
            min_iid=args.min_iid,
            metrics_file=args.metrics,
            baseline=args.baseline,
            from_csv=args.from_csv,
            shift=args.shift,
            command=shlex.join(
                ["python", "-m", "shapeshift.report", *(sys.argv[1:] if argv is None else argv)]
            ),
        )
    except ReportError as err:
        print(f"shapeshift report: {err}", file=sys.stderr)
        return 1
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
