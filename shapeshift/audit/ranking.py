"""Choosing a model from a sample of deployment data: every run of a sweep screened on one folder, ranked.

Labelled sample: runs and cells (arch x aug, over seeds) ranked by accuracy on it, with a 95% Wilson
interval for the sample's size per run and a Student-t interval over seeds per cell; the gate's flagged
share breaks ties. Unlabelled: ranked by each run's label-free accuracy estimate (`bounded` with
references, else DoC: shapeshift/qc/estimates.py), an estimate whose error the docs measure, not a
measurement.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from shapeshift.audit.recommend import DECIDES
from shapeshift.qc import estimates
from shapeshift.reporting.stats import mean_interval
from shapeshift.reporting.writing import markdown_table
from shapeshift.runs.provenance import code_commit


def wilson(correct: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: sound at small n and at 0 or n successes."""
    return estimates.interval(correct / n if n else math.nan, n)


def rank(rows: Sequence[dict], labelled: bool) -> tuple[list[dict], list[dict]]:
    """Rows (one per run: arch, aug, seed, n, correct, flagged) ranked, and the cells ranked likewise."""
    runs = []
    for r in rows:
        run = dict(r, flagged_share=r["flagged"] / r["n"] if r["n"] else math.nan)
        if labelled:
            run["accuracy"] = r["correct"] / r["n"] if r["n"] else math.nan
            run["low"], run["high"] = wilson(r["correct"], r["n"])
        runs.append(run)
    key = (
        (lambda r: (-r["accuracy"], r["flagged_share"]))
        if labelled
        else (lambda r: (-r["estimate"], r["flagged_share"]))
    )
    runs.sort(key=key)
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        cells.setdefault((r["arch"], r["aug"]), []).append(r)
    ranked = []
    for (arch, aug), members in cells.items():
        cell = {
            "arch": arch,
            "aug": aug,
            "seeds": len(members),
            "flagged_share": mean_interval(m["flagged_share"] for m in members),
            "estimate": mean_interval(m["estimate"] for m in members),
        }
        if labelled:
            cell["accuracy"] = mean_interval(m["accuracy"] for m in members)
        ranked.append(cell)
    cell_key = (
        (lambda c: (-c["accuracy"].mean, c["flagged_share"].mean))
        if labelled
        else (lambda c: (-c["estimate"].mean, c["flagged_share"].mean))
    )
    return runs, sorted(ranked, key=cell_key)


def write(
    out: Path, runs: list[dict], cells: list[dict], labelled: bool, folder: Path, advice: dict | None = None
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    columns = [
        "arch",
        "aug",
        "seed",
        "n",
        *(["correct", "accuracy", "low", "high"] if labelled else []),
        "flagged",
        "flagged_share",
        "estimate",
        "estimate_low",
        "estimate_high",
        "estimator",
        "gate",
        "consistency",
        "run_dir",
    ]
    with open(out / "ranking.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows([r.get(c, "") for c in columns] for r in runs)
    best = cells[0] if cells else None
    lines = [f"# Which model to deploy on `{folder}`", ""]
    if labelled:
        lines += [
            "Ranked by accuracy on this labelled sample (95% Wilson interval for its size); the gate's "
            "flagged share breaks ties. Cells: mean over seeds ± 95% Student-t half-width.",
            "",
        ]
        lines += [
            markdown_table(
                ["rank", "arch", "aug", "seeds", "accuracy", "flagged"],
                [
                    [
                        str(i + 1),
                        c["arch"],
                        c["aug"],
                        str(c["seeds"]),
                        c["accuracy"].cell(),
                        c["flagged_share"].cell(),
                    ]
                    for i, c in enumerate(cells)
                ],
            ),
            "",
        ]
        lines += [
            markdown_table(
                ["arch", "aug", "seed", "n", "accuracy", "95% interval", "flagged"],
                [
                    [
                        r["arch"],
                        r["aug"],
                        str(r["seed"]),
                        str(r["n"]),
                        f"{r['accuracy']:.3f}",
                        f"{r['low']:.3f}-{r['high']:.3f}",
                        f"{r['flagged_share']:.3f}",
                    ]
                    for r in runs
                ],
            ),
            "",
        ]
    else:
        lines += [
            "**Unlabelled sample: ranked by each model's estimated accuracy, not a measured one.** The "
            f"estimate is `{runs[0]['estimator'] if runs else ''}` "
            f"({estimates.DESCRIPTION[runs[0]['estimator']] if runs else ''}); its error on the study's "
            "shifts is in docs/quality-control.md. Add one subfolder per class to rank by accuracy.",
            "",
        ]
        lines += [
            markdown_table(
                ["rank", "arch", "aug", "seeds", "estimated accuracy", "flagged"],
                [
                    [
                        str(i + 1),
                        c["arch"],
                        c["aug"],
                        str(c["seeds"]),
                        c["estimate"].cell(),
                        c["flagged_share"].cell(),
                    ]
                    for i, c in enumerate(cells)
                ],
            ),
            "",
        ]
    if best:
        lines += [
            f"Deploy: **arch={best['arch']} aug={best['aug']}**"
            + (
                f" (accuracy {best['accuracy'].cell()} over {best['seeds']} seeds)."
                if labelled
                else f" (estimated accuracy {best['estimate'].cell()}); "
                "check its accuracy on labelled data first."
            ),
            "",
        ]
    lines += recommendation(advice, labelled) if advice else []
    lines += ["", f"Ranked by shapeshift commit `{code_commit()}`.", ""]
    (out / "ranking.md").write_text("\n".join(lines))
    return {"csv": out / "ranking.csv", "md": out / "ranking.md", "best": best}


def _run(r: dict) -> str:
    return f"arch={r['arch']} aug={r['aug']} seed={r['seed']}"


def recommendation(advice: dict, labelled: bool) -> list[str]:
    """The closing section of ranking.md: what to deploy, how sure, what to label, what the folder is like."""
    v = advice["verdict"]
    what = "accuracy on the labels" if labelled else f"estimated accuracy ({v['run']['estimator']})"
    lines = [
        "## Recommendation",
        "",
        f"- **Deploy {_run(v['run'])}**: {what} {v['value']:.3f} (95% interval {v['low']:.3f}-{v['high']:.3f}"
        + ("" if labelled else ", sampling error only")
        + ").",
        f"- It beats {len(v['beats'])} of the other {v['others']} runs outright "
        "(their interval lies wholly below its own)"
        + (
            ": " + ", ".join(_run(r) for r in v["beats"][:8]) + (" ..." if len(v["beats"]) > 8 else "")
            if v["beats"]
            else ""
        )
        + ".",
    ]
    if advice.get("disagreement") is not None:
        dis = advice["disagreement"]
        lines.append(
            f"- The runs disagree on {dis:.0%} of these images (mean over pairs of runs)."
            + (
                " Without labels nothing here can tell which of them is right: label the images in "
                f"`to_label.csv` ({advice['to_label']} most disputed, `to_label.png`) and rerun with "
                "`labels=<that csv>`."
                if not labelled and advice["to_label"] and dis > DECIDES
                else ""
            )
        )
    if advice.get("drift") is not None:
        lines.append(f"- {advice['drift'].describe()} (in the deployed run's feature space).")
    if advice.get("nearest"):
        names = ", ".join(f"`{n}`" for n, _ in advice["nearest"])
        lines.append(f"- The folder is closest to the catalog sets {names}.")
        best = advice.get("best_on_nearest") or []
        if best:
            top = best[0]
            if len(best) == 1:
                sure = "the only cell measured there"
            else:
                nxt = best[1]
                sure = f"ahead of arch={nxt['arch']} aug={nxt['aug']} ({nxt['accuracy'].cell()})"
                a, b = top["accuracy"], nxt["accuracy"]
                if a.half is None or b.half is None:
                    sure += "; one run per cell, so no interval: a lead, not a settled choice"
                elif a.mean - a.half > b.mean + b.half:
                    sure += ", the seed intervals apart"
                else:
                    sure += ", but the seed intervals overlap: not a settled choice"
            lines.append(
                f"- On those sets the best arch x aug of this sweep was **arch={top['arch']} "
                f"aug={top['aug']}** (accuracy {top['accuracy'].cell()} over {top['runs']} run(s)), {sure}."
            )
    return [*lines, ""]
