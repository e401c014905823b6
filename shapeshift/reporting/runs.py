"""The runs a report is made of: found and read through `shapeshift.runs.folder`, marked when left out."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from shapeshift.console.progress import track
from shapeshift.runs.folder import METRICS_FILE, RunInfo, find_runs, read_run
from shapeshift.runs.metric_keys import IID, is_number, test_key

# Keys that never make a variant: the seed is what a group averages over, the aug label holds its magnitude.
NOT_VARIANTS = {"seed", "aug.magnitude"}


class ReportError(RuntimeError):
    """Nothing to report (no run at all, or a folder that does not exist); the message is one line."""


@dataclass
class Run(RunInfo):
    left_out: str | None = None  # finished, but below --min-iid: why it is not compared
    variant: str = ""  # e.g. "padding_mode=reflect": what sets this run apart from others of its arch and aug

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    @property
    def compared(self) -> bool:
        return self.finished and self.left_out is None

    @property
    def group(self) -> tuple[str, str]:
        arch = self.arch or "?"
        return (f"{arch} {self.variant}" if self.variant else arch, self.aug or "?")


def collect(roots: Sequence[str | os.PathLike], metrics_file: str = METRICS_FILE) -> list[Run]:
    try:
        dirs = find_runs(list(roots))
    except FileNotFoundError as err:
        raise ReportError(str(err)) from None
    if not dirs:
        names = ", ".join(str(r) for r in roots)
        raise ReportError(f"no runs found under {names} (a run directory holds .hydra/ or {METRICS_FILE})")
    runs = [Run(**vars(read_run(d, metrics_file))) for d in track(dirs, "report: reading runs")]
    label_variants(runs)
    return runs


def variant_keys(runs: Sequence[Run]) -> dict[tuple, list[str]]:
    """Per (arch, aug): the config keys that differ between its runs (padding, image size, epochs,
    precision...). Averaging over them would mix different experiments, so they split the cell instead."""
    by_cell: dict[tuple, list[dict]] = {}
    for r in runs:
        if r.keys is not None:
            by_cell.setdefault((r.arch, r.aug), []).append(r.keys)
    return {
        cell: sorted(
            k for k in set().union(*members) - NOT_VARIANTS if len({_text(m.get(k)) for m in members}) > 1
        )
        for cell, members in by_cell.items()
    }


def label_variants(runs: Sequence[Run]) -> None:
    """Set the `variant` of each run in a cell that `variant_keys` splits, from the last part of each key's
    name
    (`arch.padding_mode=reflect`: "padding_mode=reflect"); a key a run's record lacks reads "unset"."""
    keys = variant_keys(runs)
    for r in runs:
        if r.keys is not None and keys.get((r.arch, r.aug)):
            r.variant = " ".join(f"{k.rsplit('.', 1)[-1]}={_label(r.keys, k)}" for k in keys[(r.arch, r.aug)])


def _text(value) -> str:
    return json.dumps(value, sort_keys=True)


def _label(keys: dict, key: str) -> str:
    if key not in keys:
        return "unset"
    value = keys[key]
    if isinstance(value, list) and all(isinstance(v, (int, float, str)) for v in value):
        short = "[" + ",".join(str(v) for v in value) + "]"
        if len(short) <= 24:  # widths, dilations: readable as they are
            return short
    if isinstance(value, (list, dict)):  # a pipeline or a family list: a short digest tells them apart
        return hashlib.sha1(_text(value).encode()).hexdigest()[:6]
    return str(value)


def leave_out_unlearned(runs: Sequence[Run], min_iid: float) -> None:
    """Mark finished runs whose i.i.d. test accuracy is below `min_iid` (or missing) as not compared."""
    for r in runs:
        if r.finished:
            iid = r.metrics.get(test_key(IID, "acc"))
            if not is_number(iid):
                r.left_out = "no test/iid/acc"
            elif iid < min_iid:
                r.left_out = f"i.i.d. accuracy {iid:.3f} < {min_iid:g}"
