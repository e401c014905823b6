"""Collect the runs of one or more sweeps into one report: tables, a CSV and plots.

    python -m shapeshift.report outputs/sweeps/2026-01-01/12-00-00-000000
    python -m shapeshift.report sweep_machine_a sweep_machine_b      # written into the first folder

Reads only each run's `metrics.json` and `.hydra/*.yaml`: no torch, Lightning or Albumentations, so it
starts in a moment and runs anywhere the folders were copied to. A run directory is any directory that
holds a `.hydra` folder or a `metrics.json`; a run without `metrics.json` is listed as unfinished (with the
first line of its error file, if it left one), never an error. Runs are grouped by arch x aug; each group
shows the mean over seeds and a 95% Student-t interval.

    python -m shapeshift.report <dirs> --min-iid 0.97    # like with like: leave out runs that did not learn

With `--min-iid`, a finished run below that i.i.d. test accuracy is left out of every table and plot (its
o.o.d. numbers say nothing about robustness) and listed with its accuracy; `results.csv` keeps every run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from shapeshift.results import METRICS_FILE, aug_label

REPORT_FILE = "report.md"
CSV_FILE = "results.csv"
ARCH_ORDER = ("cnn", "maxpool", "gap", "resnet18", "resnet18_aa")
AUG_ORDER = ("none", "basic", "strong")
IDENTITY = ("arch", "aug", "seed", "epochs")
# Files a failed run may leave behind; the first non-empty line of the first one found is shown.
ERROR_FILES = ("error.txt", "error.log", "ERROR", "failed.txt", "traceback.txt", "stderr.txt")
ERROR_SUFFIXES = (".err",)
PRUNE = {".hydra", "wandb", "checkpoints", "csv", "__pycache__", ".git"}
SEVERITY = re.compile(r"^test/(?P<family>.+)/s(?P<k>\d+)/acc$")
FAMILY_MEAN = re.compile(r"^test/(?P<family>[^/]+)/acc$")
NOT_FAMILIES = {"iid", "mix", "ood"}
MAIN_COLUMNS = (  # (header, metrics key) of the terminal and report's main table
    ("iid", "test/iid/acc"),
    ("position", "test/position/acc"),
    ("position s5", "test/position/s5/acc"),
    ("ood", "test/ood/acc"),
    ("mix", "test/mix/acc"),
)
NO_INTERVAL = "—"

# Two-sided 95% quantiles t(0.975, df) of Student's t distribution, df = 1..30; 1.96 beyond.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


class ReportError(RuntimeError):
    """Nothing to report (no run at all, or a folder that does not exist); the message is one line."""


def t_quantile(df: int) -> float:
    """t(0.975, df): the multiplier of the standard error for a two-sided 95% interval."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return T975[df - 1] if df <= len(T975) else 1.96


@dataclass(frozen=True)
class Stat:
    """Mean over seeds, the 95% interval's half-width (None for one value) and the number of values."""

    n: int
    mean: float
    half: float | None

    def cell(self, digits: int = 3) -> str:
        interval = NO_INTERVAL if self.half is None else f"{self.half:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {interval}"


def mean_interval(values: Iterable[float]) -> Stat | None:
    """Mean +- t(0.975, n-1) * sd / sqrt(n) (sample sd); None when there is no value."""
    xs = [float(v) for v in values if _number(v)]
    if not xs:
        return None
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return Stat(1, mean, None)
    half = t_quantile(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return Stat(len(xs), mean, half)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- finding and reading runs ---------------------------------------------------------------------------
@dataclass
class Run:
    path: Path  # as found under the folder the user named
    arch: str | None = None
    aug: str | None = None
    seed: int | None = None
    data: str | None = None
    metrics: dict | None = None  # None: no (readable) metrics.json, the run did not finish
    problem: str | None = None  # why it has no metrics: an error file's first line, or what is missing
    left_out: str | None = None  # finished, but below --min-iid: why it is not compared
    families: list[str] = field(default_factory=list)  # catalog order from the run's config

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    @property
    def compared(self) -> bool:
        return self.finished and self.left_out is None

    @property
    def group(self) -> tuple[str, str]:
        return (self.arch or "?", self.aug or "?")


def find_run_dirs(roots: Sequence[str | os.PathLike]) -> list[Path]:
    """Every directory under `roots` holding `.hydra/` or `metrics.json`, each once, in a stable order."""
    found: dict[Path, Path] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise ReportError(f"{root} is not a directory")
        for dirpath, dirnames, filenames in os.walk(root):
            if ".hydra" in dirnames or METRICS_FILE in filenames:
                path = Path(dirpath)
                found.setdefault(path.resolve(), path)
                dirnames.clear()  # a run holds no other runs
            else:
                dirnames[:] = sorted(d for d in dirnames if d not in PRUNE)
    return sorted(found.values(), key=_natural)


def _natural(path: Path) -> list:
    """Sort `10_arch=...` after `9_arch=...`."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _load_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _first_line(path: Path) -> str | None:
    try:
        with path.open(errors="replace") as f:
            for line in f:
                if line.strip():
                    return line.strip()
    except OSError:
        return None
    return None


def _error_line(run_dir: Path) -> str | None:
    candidates = [run_dir / name for name in ERROR_FILES]
    with contextlib.suppress(OSError):
        candidates += sorted(p for p in run_dir.iterdir() if p.suffix in ERROR_SUFFIXES)
    for path in candidates:
        if path.is_file():
            line = _first_line(path)
            return f"{path.name}: {line}" if line else f"{path.name} (empty)"
    return None


def _override(overrides: list, key: str) -> str | None:
    for item in overrides:
        if isinstance(item, str) and item.split("=", 1)[0].lstrip("+~") == key and "=" in item:
            return item.split("=", 1)[1]
    return None


def read_run(path: Path) -> Run:
    """Identity from metrics.json, else from the Hydra files; a missing or broken file is noted, not fatal."""
    run = Run(path)
    hydra_dir = path / ".hydra"
    config = _mapping(_load_yaml(hydra_dir / "config.yaml"))
    hydra = _mapping(_mapping(_load_yaml(hydra_dir / "hydra.yaml")).get("hydra"))
    overrides = _load_yaml(hydra_dir / "overrides.yaml")
    overrides = overrides if isinstance(overrides, list) else []
    choices = _mapping(_mapping(hydra.get("runtime")).get("choices"))
    aug_cfg = _mapping(config.get("aug"))
    run.arch = choices.get("arch") or _override(overrides, "arch")
    run.aug = aug_cfg.get("name") or choices.get("aug") or _override(overrides, "aug")
    magnitude = aug_cfg.get("magnitude", 1)
    if run.aug and _number(magnitude) and magnitude != 1:
        run.aug = aug_label(run.aug, magnitude)
    seed = config.get("seed", _override(overrides, "seed"))
    run.seed = int(seed) if isinstance(seed, (int, str)) and str(seed).lstrip("-").isdigit() else None
    run.data = choices.get("data") or _override(overrides, "data")
    families = _mapping(config.get("shift")).get("families")
    run.families = [str(f) for f in families] if isinstance(families, dict) else []

    metrics_path = path / METRICS_FILE
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text())
            if not isinstance(metrics, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            run.problem = f"{METRICS_FILE} unreadable: {str(err).splitlines()[0]}"
        else:
            run.metrics = metrics
            run.arch = str(metrics.get("arch") or run.arch or "?")
            run.aug = str(metrics.get("aug") or run.aug or "?")
            if _number(metrics.get("seed")):
                run.seed = int(metrics["seed"])
    if not run.finished:
        run.problem = _error_line(path) or run.problem or f"no {METRICS_FILE} (unfinished or failed)"
    return run


def collect(roots: Sequence[str | os.PathLike]) -> list[Run]:
    dirs = find_run_dirs(roots)
    if not dirs:
        names = ", ".join(str(r) for r in roots)
        raise ReportError(f"no runs found under {names} (a run directory holds .hydra/ or {METRICS_FILE})")
    return [read_run(d) for d in dirs]


# -- grouping -------------------------------------------------------------------------------------------
def _rank(value: str, order: Sequence[str]) -> tuple:
    return (order.index(value), "") if value in order else (len(order), value)


def group_key_order(key: tuple[str, str]) -> tuple:
    return (_rank(key[0], ARCH_ORDER), _rank(key[1], AUG_ORDER))


def families_of(runs: Sequence[Run]) -> list[str]:
    """Families in the catalog's order (from the runs' configs), then any others alphabetically."""
    order: list[str] = []
    for run in runs:
        for f in run.families:
            if f not in order:
                order.append(f)
    seen = set()
    for run in runs:
        for key in run.metrics or {}:
            m = SEVERITY.match(key) or FAMILY_MEAN.match(key)
            if m and m["family"] not in NOT_FAMILIES and "/" not in m["family"]:
                seen.add(m["family"])
    return [f for f in order if f in seen] + sorted(seen - set(order))


def metric_keys(runs: Sequence[Run]) -> list[str]:
    """Every numeric metric of any finished run, in a reading order: val, test (i.i.d., families, mix,
    o.o.d., others), time, then anything else."""
    keys = {k for run in runs for k, v in (run.metrics or {}).items() if k not in IDENTITY and _number(v)}
    families = families_of(runs)

    def order(key: str) -> tuple:
        if key.startswith("val/"):
            return (0, key)
        if key.startswith("test/"):
            parts = key.split("/")
            name = parts[1]
            if name == "iid":
                return (1, 0, key)
            if name in families:
                sev = SEVERITY.match(key)
                return (1, 1, families.index(name), int(sev["k"]) if sev else 0, key)
            if name == "mix":
                return (1, 2, key)
            if name.startswith("ood"):
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
        stats = {}
        for metric in keys:
            stat = mean_interval(r.metrics.get(metric) for r in members)
            if stat is not None:
                stats[metric] = stat
        out.append(Group(key[0], key[1], members, stats))
    return out


def gains(groups: Sequence[Group], metric: str = "test/ood/acc", baseline: str = "none") -> list[dict]:
    """Each augmentation's gain over `baseline` for the same arch: the difference of the means, and a
    95% interval over the seeds both groups share (paired by seed), when two or more are shared."""
    by_key = {(g.arch, g.aug): g for g in groups}
    rows = []
    for g in groups:
        base = by_key.get((g.arch, baseline))
        if g.aug == baseline or base is None or metric not in g.stats or metric not in base.stats:
            continue
        base_by_seed = {r.seed: r.metrics.get(metric) for r in base.runs if r.seed is not None}
        diffs = [r.metrics.get(metric) - base_by_seed[r.seed] for r in g.runs
                 if r.seed in base_by_seed and _number(r.metrics.get(metric)) and _number(base_by_seed[r.seed])]
        paired = mean_interval(diffs)
        rows.append({"arch": g.arch, "aug": g.aug, "gain": g.stats[metric].mean - base.stats[metric].mean,
                     "paired": paired})
    return rows


# -- writing ----------------------------------------------------------------------------------------------
def set_columns(groups: Sequence[Group], runs: Sequence[Run]) -> list[tuple[str, str]]:
    """(header, key) of the evaluation sets: i.i.d., each family's mean, mix, o.o.d."""
    keys = {k for g in groups for k in g.stats}
    cols = [("iid", "test/iid/acc")]
    cols += [(f, f"test/{f}/acc") for f in families_of(runs)]
    cols += [("mix", "test/mix/acc"), ("ood", "test/ood/acc")]
    return [(h, k) for h, k in cols if k in keys]


def extra_keys(groups: Sequence[Group]) -> list[str]:
    """test/ metrics other than accuracies (ece, auroc, consistency, ...) and the o.o.d./i.i.d. ratio."""
    keys: list[str] = []
    for g in groups:
        for k in g.stats:
            if k.startswith("test/") and not k.endswith("/acc") and k not in keys:
                keys.append(k)
    return keys


def _cells(group: Group, keys: Sequence[str]) -> list[str]:
    return [group.stats[k].cell() if k in group.stats else "" for k in keys]


def main_rows(groups: Sequence[Group]) -> tuple[list[str], list[list[str]]]:
    header = ["arch", "aug", "n", *(h for h, _ in MAIN_COLUMNS)]
    rows = [[g.arch, g.aug, str(g.n), *_cells(g, [k for _, k in MAIN_COLUMNS])] for g in groups]
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _chunks(items: Sequence, most: int) -> list[Sequence]:
    """Split a wide table into tables of at most `most` columns, as even as possible."""
    if not items:
        return []
    size = math.ceil(len(items) / math.ceil(len(items) / most))
    return [items[i : i + size] for i in range(0, len(items), size)]


EVALUATED = ("eval/checkpoint", "eval/epoch", "eval/step")  # which weights the metrics describe


def write_csv(path: Path, runs: Sequence[Run]) -> list[str]:
    """One row per finished run: where it is, who it is, every numeric metric, the checkpoint, and why it
    was left out of the comparison (empty when compared)."""
    finished = [r for r in runs if r.finished]
    keys = metric_keys(finished)
    keys = [k for k in keys if k not in EVALUATED]
    columns = ["run_dir", "arch", "aug", "seed", "data", "epochs", *EVALUATED, *keys, "checkpoint", "left_out"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in finished:
            m = r.metrics
            writer.writerow([str(r.path), r.arch, r.aug, "" if r.seed is None else r.seed, r.data or "",
                             m.get("epochs", ""), *(m.get(k, "") for k in EVALUATED),
                             *(m[k] if _number(m.get(k)) else "" for k in keys),
                             m.get("checkpoint") or "", r.left_out or ""])
    return columns


def notes(runs: Sequence[Run]) -> list[str]:
    """Things that would make a mean misleading: a seed counted twice, one group on several data sets."""
    out = []
    seen: dict[tuple, list[Run]] = {}
    for r in runs:
        if r.compared:
            seen.setdefault((*r.group, r.seed), []).append(r)
    for (arch, aug, seed), members in seen.items():
        if len(members) > 1 and seed is not None:
            where = ", ".join(f"`{m.path}`" for m in members)
            out.append(f"arch={arch} aug={aug} seed={seed} appears in {len(members)} runs (each counted): {where}")
    data: dict[tuple, set] = {}
    for r in runs:
        if r.compared:
            data.setdefault(r.group, set()).add(r.data or "?")
    for (arch, aug), names in data.items():
        if len(names) > 1:
            out.append(f"arch={arch} aug={aug} mixes runs on data {sorted(names)}")
    return out


def render_markdown(roots: Sequence[str], runs: Sequence[Run], groups: Sequence[Group],
                    plots: dict[str, str], skipped: dict[str, str]) -> str:
    finished = [r for r in runs if r.finished]
    missing = [r for r in runs if not r.finished]
    lines = ["# shapeshift report", ""]
    lines.append("Runs from " + ", ".join(f"`{r}`" for r in roots)
                 + f": {len(runs)} found, {len(finished)} finished, {len(missing)} without {METRICS_FILE}.")
    lines += ["", "Cells are the mean over seeds ± the half-width of a 95% Student-t interval "
              f"(t(0.975, n-1) · sd / √n); n = 1 has no interval ({NO_INTERVAL}). Accuracies are fractions.",
              "`position` is the family's mean over severities 1-5; `position s5` the shapes in the opposite "
              "quadrants; `ood` the mean over every family and severity.", ""]
    if groups:
        lines += ["## Main table", "", markdown_table(*main_rows(groups)), ""]
        cols = set_columns(groups, runs)
        if cols:
            lines += ["## Every evaluation set (accuracy)", ""]
            for part in _chunks(cols, 7):
                header = ["arch", "aug", "n", *(h for h, _ in part)]
                rows = [[g.arch, g.aug, str(g.n), *_cells(g, [k for _, k in part])] for g in groups]
                lines += [markdown_table(header, rows), ""]
        gain_rows = gains(groups)
        if gain_rows:
            lines += ["## Gain of each augmentation over `none` (test/ood/acc)", "",
                      "Difference of the group means; the interval is over the seeds both groups share "
                      "(paired by seed).", ""]
            rows = [[g["arch"], g["aug"], f"{g['gain']:+.3f}",
                     g["paired"].cell() if g["paired"] else "", str(g["paired"].n if g["paired"] else 0)]
                    for g in gain_rows]
            lines += [markdown_table(["arch", "aug", "gain", "paired gain", "pairs"], rows), ""]
        extras = extra_keys(groups)
        if extras:
            lines += ["## Other test metrics", ""]
            for part in _chunks(extras, 5):
                header = ["arch", "aug", "n", *(k.removeprefix("test/") for k in part)]
                rows = [[g.arch, g.aug, str(g.n), *_cells(g, part)] for g in groups]
                lines += [markdown_table(header, rows), ""]
        lines += ["## Seeds", "", markdown_table(
            ["arch", "aug", "seeds"],
            [[g.arch, g.aug, ", ".join("?" if s is None else str(s) for s in g.seeds)] for g in groups]), ""]
    else:
        lines += ["No run has finished yet.", ""]
    if plots or skipped:
        lines += ["## Plots", ""]
        for title, name in plots.items():
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
        for name, why in skipped.items():
            lines.append(f"- {name}: not drawn ({why})")
        if skipped:
            lines.append("")
    left_out = [r for r in runs if r.left_out]
    if left_out:
        lines += [f"## Left out: did not learn the i.i.d. task ({len(left_out)})", "",
                  "Finished, but below the i.i.d. accuracy the report was asked to require (`--min-iid`): "
                  "not in any table or plot above; their rows are in the CSV.", "", markdown_table(
                      ["run", "arch", "aug", "seed", "epochs", "why"],
                      [[f"`{r.path}`", r.arch or "?", r.aug or "?", "?" if r.seed is None else str(r.seed),
                        str(r.metrics.get("epochs", "?")), r.left_out] for r in left_out]), ""]
    if missing:
        lines += [f"## Runs without {METRICS_FILE} ({len(missing)})", "", markdown_table(
            ["run", "arch", "aug", "seed", "why"],
            [[f"`{r.path}`", r.arch or "?", r.aug or "?", "?" if r.seed is None else str(r.seed),
              (r.problem or "").replace("|", "\\|")] for r in missing]), ""]
    warn = notes(runs)
    if warn:
        lines += ["## Notes", "", *(f"- {w}" for w in warn), ""]
    lines += [f"Every run's numbers: [`{CSV_FILE}`]({CSV_FILE}).", ""]
    return "\n".join(lines)


def leave_out_unlearned(runs: Sequence[Run], min_iid: float) -> None:
    """Mark finished runs whose i.i.d. test accuracy is below `min_iid` (or missing) as not compared."""
    for r in runs:
        if r.finished:
            iid = r.metrics.get("test/iid/acc")
            if not _number(iid):
                r.left_out = "no test/iid/acc"
            elif iid < min_iid:
                r.left_out = f"i.i.d. accuracy {iid:.3f} < {min_iid:g}"


def report(roots: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None,
           plots: bool = True, min_iid: float | None = None) -> dict:
    """Write report.md, results.csv and the plots into `out_dir` (default: the first root)."""
    roots = [str(r) for r in roots]
    runs = collect(roots)
    if min_iid is not None:
        leave_out_unlearned(runs, min_iid)
    groups = summarize(runs)
    out = Path(out_dir or roots[0])
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / CSV_FILE, runs)
    drawn: dict[str, str] = {}
    skipped: dict[str, str] = {}
    if plots and groups:
        from shapeshift import report_plots

        drawn, skipped = report_plots.draw_all(out, groups, runs)
    (out / REPORT_FILE).write_text(render_markdown(roots, runs, groups, drawn, skipped))
    return {"runs": runs, "groups": groups, "out": out, "plots": drawn, "skipped": skipped}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shapeshift.report",
        description="Summarise the runs of one or more sweep folders: report.md, results.csv and PNG plots, "
                    "written into the first folder (or --out).")
    parser.add_argument("dirs", nargs="+", help="sweep or run folders, searched recursively")
    parser.add_argument("--out", help="write the report here instead of into the first folder")
    parser.add_argument("--no-plots", action="store_true", help="tables and CSV only")
    parser.add_argument("--min-iid", type=float, metavar="ACC",
                        help="leave out runs whose i.i.d. test accuracy is below ACC (e.g. 0.97): like with like")
    args = parser.parse_args(argv)
    try:
        result = report(args.dirs, args.out, plots=not args.no_plots, min_iid=args.min_iid)
    except ReportError as err:
        print(f"shapeshift report: {err}", file=sys.stderr)
        return 1
    runs, groups, out = result["runs"], result["groups"], result["out"]
    missing = [r for r in runs if not r.finished]
    if groups:
        print(text_table(*main_rows(groups)))
    else:
        print("no run has finished yet")
    print(f"\n{len(runs)} runs, {len(runs) - len(missing)} finished, {len(missing)} without {METRICS_FILE}")
    for r in missing:
        print(f"  missing: {r.path}  ({r.problem})")
    for r in runs:
        if r.left_out:
            print(f"  left out: {r.path}  ({r.left_out})")
    written = [out / REPORT_FILE, out / CSV_FILE, *(out / name for name in result["plots"].values())]
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
