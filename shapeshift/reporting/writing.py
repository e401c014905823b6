"""The report's files and terminal table: report.md, results.csv, and a plain-text main table."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from shapeshift.reporting.corruption_error import Baseline
from shapeshift.reporting.runs import Run
from shapeshift.reporting.stats import NO_INTERVAL
from shapeshift.reporting.tables import (
    Group,
    ce_rows,
    cells,
    extra_keys,
    families_of,
    gains,
    main_rows,
    metric_keys,
    notes,
    qc_tables,
    set_columns,
    sign_tests,
)
from shapeshift.runs.folder import METRICS_FILE
from shapeshift.runs.metric_keys import CE, CORRUPTION_GROUPS, IMAGENET_C, is_number, mce_key, test_key
from shapeshift.runs.provenance import COMMIT_KEY, PRECISION_KEY, code_commit

REPORT_FILE = "report.md"
CSV_FILE = "results.csv"
EVALUATED = ("eval/checkpoint", "eval/epoch", "eval/step")  # which weights a row's metrics describe
NAMED = ("qc/gate",)  # a choice recorded by name, kept in the CSV beside the numbers


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


def run_precision(r: Run) -> str | None:
    """The precision the run computed in: recorded in its results, else its config's (run.json)."""
    value = r.metrics.get(PRECISION_KEY) or (r.keys or {}).get(f"trainer.{PRECISION_KEY}")
    return None if value is None else str(value)


def provenance_section(runs: Sequence[Run], command: str | None = None) -> list[str]:
    """Which code and which arithmetic computed the report's numbers: runs per (commit, precision), the
    commit that wrote the report and the command that remakes it. A run made before shapeshift recorded
    its commit says so."""
    counts: dict[tuple[str, str], int] = {}
    for r in runs:
        if r.finished:
            cell = (r.metrics.get(COMMIT_KEY) or "not recorded", run_precision(r) or "not recorded")
            counts[cell] = counts.get(cell, 0) + 1
    rows = [[f"`{c}`" if c != "not recorded" else c, p, str(n)] for (c, p), n in sorted(counts.items())]
    lines = ["## Provenance", ""]
    if rows:
        lines += [markdown_table(["commit", "precision", "runs"], rows), ""]
    lines += [
        f"Report written by commit `{code_commit()}`. A run's commit is the code that computed its results "
        "file (for an evaluation file, the code that evaluated it); `+dirty`: the package or its configs "
        "had uncommitted changes.",
        "",
    ]
    if command:
        lines += [f"Remake this report: `{command}`", ""]
    return lines


def write_csv(path: Path, runs: Sequence[Run]) -> list[str]:
    """One row per finished run: where it is, who it is, the commit and precision that computed it, which
    weights were evaluated, every numeric metric, the checkpoint, and why it was left out of the
    comparison (empty when compared)."""
    finished = [r for r in runs if r.finished]
    keys = [k for k in metric_keys(finished) if k not in (*EVALUATED, COMMIT_KEY, PRECISION_KEY)]
    named = [k for k in NAMED if any(r.metrics.get(k) for r in finished)]  # a choice, not a number
    columns = [
        "run_dir",
        "arch",
        "variant",
        "aug",
        "seed",
        "data",
        "epochs",
        COMMIT_KEY,
        PRECISION_KEY,
        *EVALUATED,
        *keys,
        *named,
        "checkpoint",
        "left_out",
    ]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in finished:
            m = r.metrics
            writer.writerow(
                [
                    str(r.path),
                    r.arch,
                    r.variant,
                    r.aug,
                    "" if r.seed is None else r.seed,
                    r.data or "",
                    m.get("epochs", ""),
                    m.get(COMMIT_KEY) or "",
                    run_precision(r) or "",
                    *(m.get(k, "") for k in EVALUATED),
                    *(m[k] if is_number(m.get(k)) else "" for k in keys),
                    *(m.get(k) or "" for k in named),
                    m.get("checkpoint") or "",
                    r.left_out or "",
                ]
            )
    return columns


def _group_tables(groups: Sequence[Group], runs: Sequence[Run], baseline: Baseline | None) -> list[str]:
    lines = ["## Main table", "", markdown_table(*main_rows(groups)), ""]
    cols = set_columns(groups, runs)
    if cols:
        lines += ["## Every evaluation set (accuracy)", ""]
        for part in _chunks(cols, 7):
            header = ["arch", "aug", "n", *(h for h, _ in part)]
            rows = [[g.arch, g.aug, str(g.n), *cells(g, [k for _, k in part])] for g in groups]
            lines += [markdown_table(header, rows), ""]
    gain_rows = gains(groups)
    if gain_rows:
        lines += [
            "## Gain of each augmentation over `none` (test/ood/acc)",
            "",
            "Difference of the group means; the interval is over the seeds both groups share (paired by "
            "seed); p: two-sided paired t-test, Holm: p after Holm's correction over every row of this "
            "table. Then a sign test per augmentation over all its seed pairs (ties left out), Holm over "
            "the augmentations.",
            "",
        ]
        lines += _gain_tables(gain_rows, "gain", "pairs up")
    extras = extra_keys(groups)
    if extras:
        lines += ["## Other test metrics", ""]
        for part in _chunks(extras, 5):
            header = ["arch", "aug", "n", *(k.removeprefix("test/") for k in part)]
            rows = [[g.arch, g.aug, str(g.n), *cells(g, part)] for g in groups]
            lines += [markdown_table(header, rows), ""]
    sections = (
        (
            qc_tables(groups),
            "## Quality control: o.o.d. detection (AUROC, i.i.d. test images as positives)",
            "Each detector's AUROC on the sets a deployment gate must catch, and the gate's (`qc.gate`) "
            "coverage (share accepted) and accuracy on the images it accepts. Its threshold passes "
            "`qc.keep` (95% by default) of the run's right i.i.d. validation predictions.",
        ),
        (
            qc_tables(groups, "eaurc", gate=False),
            "## Quality control: failure detection (E-AURC, lower is better)",
            "Does a detector's score tell right from wrong predictions? On each set pooled with the i.i.d. "
            "test images: the excess area under the risk-coverage curve over the best possible ordering "
            "(0 = every error scored below every correct prediction). Failure AUROC and AURC are in the CSV.",
        ),
    )
    for tables, title, intro in sections:
        if tables:
            lines += [title, "", intro, ""]
            for name, header, rows in tables:
                lines += [f"### `{name}`", "", markdown_table(header, rows), ""]
    lines += corruption_section(groups, baseline, families_of(runs))
    lines += [
        "## Seeds",
        "",
        markdown_table(
            ["arch", "aug", "seeds"],
            [[g.arch, g.aug, ", ".join("?" if s is None else str(s) for s in g.seeds)] for g in groups],
        ),
        "",
    ]
    return lines


def _gain_tables(gain_rows: Sequence[dict], change: str, direction: str, up: bool = True) -> list[str]:
    """The paired table (one row per arch x aug) and the sign tests under it. `up=False` counts the
    pairs where the metric fell (for errors, where lower is better)."""
    rows = [
        [
            g["arch"],
            g["aug"],
            f"{g['gain']:+.3f}",
            g["paired"].cell() if g["paired"] else "",
            str(g["paired"].n if g["paired"] else 0),
            _p(g["p"]),
            _p(g["p_holm"]),
        ]
        for g in gain_rows
    ]
    lines = [markdown_table(["arch", "aug", change, f"paired {change}", "pairs", "p", "Holm"], rows), ""]
    signs = sign_tests(gain_rows)
    if signs:
        rows = [
            [
                s["aug"],
                ", ".join(s["archs"]),
                f"{s['wins'] if up else s['pairs'] - s['wins']} of {s['pairs']}",
                _p(s["p"]),
                _p(s["p_holm"]),
            ]
            for s in signs
        ]
        lines += [markdown_table(["aug", "archs", direction, "p", "Holm"], rows), ""]
    return lines


def corruption_section(
    groups: Sequence[Group], baseline: Baseline | None, families: Sequence[str]
) -> list[str]:
    """The field's summary numbers for shift=corruptions: CE per family and mCE against the baseline."""
    if baseline is None:
        if all(f in families for f in IMAGENET_C):
            return [
                "## Corruption error",
                "",
                "These runs hold the 15 ImageNet-C corruptions: `--baseline arch=<arch>` adds CE and mCE.",
                "",
            ]
        return []
    scored = [f for f in families if any(test_key(f, CE) in g.stats for g in groups)]
    if not scored:
        return []
    n = len(baseline.runs)
    lines = [
        "## Corruption error (Hendrycks & Dietterich 2019)",
        "",
        f"Baseline: `{baseline.label}`, {n} run{'s' * (n != 1)}, its errors averaged over seeds. "
        "CE(c) = Σ_s E(c, s) / Σ_s E_base(c, s); relative CE(c) = Σ_s [E(c, s) − E(clean)] / "
        "Σ_s [E_base(c, s) − E_base(clean)], each model against its own clean error. mCE is the mean CE "
        "over the 15 ImageNet-C corruptions; the held-out (validation) corruptions and the geometric "
        "shifts get the same mean beside it, never in it. 1.000 is the baseline's error; lower is better. "
        "Error per set is 1 − its accuracy in the CSV.",
        "",
    ]
    for metric, names in baseline.undefined.items():
        lines.append(
            f"- {metric}: left out of every mean for {', '.join(f'`{f}`' for f in names)}: the baseline's "
            + ("error there is zero." if metric == CE else "error there does not rise above its clean error.")
        )
    for group, names in baseline.incomplete.items():
        lines.append(f"- no {group} mean: the runs lack {', '.join(f'`{f}`' for f in names)}.")
    lines += [""] if baseline.undefined or baseline.incomplete else []
    summary, per_family = ce_rows(groups, scored)
    header = ["arch", "aug", "n", "clean err"]
    header += [
        f"{'rel. ' if rel else ''}mCE{'' if g == 'imagenet_c' else ' ' + g}"
        for g in CORRUPTION_GROUPS
        for rel in (False, True)
    ]
    keep = [i for i in range(len(header)) if i < 4 or any(row[i] for row in summary)]
    lines += [markdown_table([header[i] for i in keep], [[row[i] for i in keep] for row in summary]), ""]
    lines += ["CE per family:", ""]
    for part in _chunks(list(range(len(scored))), 8):
        head = ["arch", "aug", "n", *(scored[i] for i in part)]
        lines += [markdown_table(head, [row[:3] + [row[3 + i] for i in part] for row in per_family]), ""]
    changes = gains(groups, metric=mce_key())
    if changes:
        lines += [
            "Change of mCE against `none` of the same arch (negative: fewer errors), paired by seed; p and "
            "Holm as in the gain table, then a sign test per augmentation (pairs where mCE fell).",
            "",
        ]
        lines += _gain_tables(changes, "mCE change", "pairs down", up=False)
    return lines


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _seed(r: Run) -> str:
    return "?" if r.seed is None else str(r.seed)


def render_markdown(
    roots: Sequence[str],
    runs: Sequence[Run],
    groups: Sequence[Group],
    plots: dict[str, str],
    skipped: dict[str, str],
    baseline: Baseline | None = None,
    command: str | None = None,
) -> str:
    finished = [r for r in runs if r.finished]
    missing = [r for r in runs if not r.finished]
    lines = ["# shapeshift report", ""]
    lines.append(
        "Runs from "
        + ", ".join(f"`{r}`" for r in roots)
        + f": {len(runs)} found, {len(finished)} finished, {len(missing)} without {METRICS_FILE}."
    )
    lines += [
        "",
        "Cells are the mean over seeds ± the half-width of a 95% Student-t interval "
        f"(t(0.975, n-1) · sd / √n); n = 1 has no interval ({NO_INTERVAL}). Accuracies are fractions.",
        "`position` is the family's mean over severities 1-5; `position s5` the shapes in the opposite "
        "quadrants; `ood` the mean over every family and severity.",
        "",
    ]
    lines += _group_tables(groups, runs, baseline) if groups else ["No run has finished yet.", ""]
    if plots or skipped:
        lines += ["## Plots", ""]
        for title, name in plots.items():
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
        lines += [f"- {name}: not drawn ({why})" for name, why in skipped.items()]
        lines += [""] if skipped else []
    left_out = [r for r in runs if r.left_out]
    if left_out:
        lines += [
            f"## Left out: did not learn the i.i.d. task ({len(left_out)})",
            "",
            "Finished, but below the i.i.d. accuracy the report was asked to require (`--min-iid`): "
            "not in any table or plot above; their rows are in the CSV.",
            "",
            markdown_table(
                ["run", "arch", "aug", "seed", "epochs", "why"],
                [
                    [
                        f"`{r.path}`",
                        r.arch or "?",
                        r.aug or "?",
                        _seed(r),
                        str(r.metrics.get("epochs", "?")),
                        r.left_out,
                    ]
                    for r in left_out
                ],
            ),
            "",
        ]
    if missing:
        lines += [
            f"## Runs without {METRICS_FILE} ({len(missing)})",
            "",
            markdown_table(
                ["run", "arch", "aug", "seed", "why"],
                [
                    [
                        f"`{r.path}`",
                        r.arch or "?",
                        r.aug or "?",
                        _seed(r),
                        (r.problem or "").replace("|", "\\|"),
                    ]
                    for r in missing
                ],
            ),
            "",
        ]
    warn = notes(runs)
    if warn:
        lines += ["## Notes", "", *(f"- {w}" for w in warn), ""]
    lines += provenance_section(runs, command)
    lines += [f"Every run's numbers: [`{CSV_FILE}`]({CSV_FILE}).", ""]
    return "\n".join(lines)
