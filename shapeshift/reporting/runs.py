"""The runs a report is made of: found and read through `shapeshift.run_dir`, marked when left out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from shapeshift.run_dir import METRICS_FILE, RunInfo, find_runs, is_number, read_run


class ReportError(RuntimeError):
    """Nothing to report (no run at all, or a folder that does not exist); the message is one line."""


@dataclass
class Run(RunInfo):
    left_out: str | None = None  # finished, but below --min-iid: why it is not compared

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    @property
    def compared(self) -> bool:
        return self.finished and self.left_out is None

    @property
    def group(self) -> tuple[str, str]:
        return (self.arch or "?", self.aug or "?")


def collect(roots: Sequence[str | os.PathLike], metrics_file: str = METRICS_FILE) -> list[Run]:
    try:
        dirs = find_runs(list(roots))
    except FileNotFoundError as err:
        raise ReportError(str(err)) from None
    if not dirs:
        names = ", ".join(str(r) for r in roots)
        raise ReportError(f"no runs found under {names} (a run directory holds .hydra/ or {METRICS_FILE})")
    return [Run(**vars(read_run(d, metrics_file))) for d in dirs]


def leave_out_unlearned(runs: Sequence[Run], min_iid: float) -> None:
    """Mark finished runs whose i.i.d. test accuracy is below `min_iid` (or missing) as not compared."""
    for r in runs:
        if r.finished:
            iid = r.metrics.get("test/iid/acc")
            if not is_number(iid):
                r.left_out = "no test/iid/acc"
            elif iid < min_iid:
                r.left_out = f"i.i.d. accuracy {iid:.3f} < {min_iid:g}"
