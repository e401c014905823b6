"""The runs a report is made of: found and read through `shapeshift.runs.folder`, marked when left out."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

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


# results.csv's columns that say who a run is rather than what it measured (writing.write_csv's order).
IDENTITY_COLUMNS = ("run_dir", "arch", "variant", "aug", "seed", "data", "left_out")
NUMBER = re.compile(r"^-?\d+(\.\d*)?([eE][-+]?\d+)?$")


def _cell(text: str):
    """A CSV cell as metrics.json held it: an int, a float, or the text itself."""
    if not NUMBER.match(text):
        return text
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def read_catalog(path: str | os.PathLike) -> dict:
    """{family: severities} of a catalog file such as conf/shift/default.yaml (its `families`)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ReportError(f"--shift {path}: {str(err).splitlines()[0]}") from None
    families = data.get("families") if isinstance(data, dict) else None
    if not isinstance(families, dict):
        raise ReportError(
            f"--shift {path}: no `families:` mapping (a catalog such as conf/shift/default.yaml)"
        )
    return {str(f): v for f, v in families.items()}


def collect_csv(path: str | os.PathLike, catalog: dict | None = None) -> list[Run]:
    """The runs of a report's results.csv, when their folders are gone or elsewhere: identity, variant and
    left-out reason as the report recorded them, every other column as the run's metrics. `catalog` (from
    `--shift`) gives the family order and what each severity does, which a CSV does not hold."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise ReportError(f"--from-csv {path}: {err.strerror}") from None
    if not rows or "run_dir" not in rows[0]:
        raise ReportError(f"--from-csv {path}: not a shapeshift results.csv (no run_dir column, or no rows)")
    runs = []
    for row in rows:
        metrics = {k: _cell(v) for k, v in row.items() if k not in IDENTITY_COLUMNS and v != ""}
        metrics.update({"arch": row["arch"], "aug": row["aug"]})
        seed = _cell(row.get("seed", ""))
        run = Run(
            Path(row["run_dir"]),
            arch=row["arch"] or None,
            aug=row["aug"] or None,
            seed=seed if isinstance(seed, int) else None,
            data=row.get("data") or None,
            families=list(catalog or {}),
            catalog=dict(catalog or {}),
            metrics=metrics,
            left_out=row.get("left_out") or None,
            variant=row.get("variant", ""),
        )
        runs.append(run)
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
