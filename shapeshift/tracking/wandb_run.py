"""The report run: one W&B run (job_type=report) in a sweep's group, with the sweep's config, a compact
table of the runs, native charts (accuracy against severity per family, o.o.d. accuracy per cell), the
plots W&B has no chart for, and report.md, results.csv and every plot as an artifact."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from shapeshift.reporting.tables import Group
from shapeshift.reporting.writing import CSV_FILE, REPORT_FILE
from shapeshift.runs.metric_keys import IID, MIX, OOD, SEVERITIES, SHORTCUT_KEY, severity_key, test_key
from shapeshift.tracking.wandb_results import families, headline_keys, log_report_files

SEVERITY_PLOT = "severity_"  # the PNGs of accuracy against severity, replaced by native line charts
MULTIRUN_FILE = "multirun.yaml"  # Hydra's record of a sweep's config


def sweep_config(sweep: Path, config: DictConfig | None) -> dict:
    """The sweep's config (`<sweep>/multirun.yaml`, else the multirun's), each key resolved where it can
    be, without the `hydra` node but with what was swept: `sweep.overrides` and `sweep.params`."""
    path = sweep / MULTIRUN_FILE
    cfg = OmegaConf.load(path) if path.is_file() else (config or OmegaConf.create())
    raw = OmegaConf.to_container(cfg, resolve=False)
    out = {}
    for key in raw:
        if key == "hydra":
            continue
        try:
            node = cfg[key]
            out[key] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        except Exception:  # noqa: BLE001 - an interpolation only Hydra resolves (${hydra:...}) stays as written
            out[key] = raw[key]
    out["sweep"] = {
        "dir": str(sweep),
        "overrides": list(OmegaConf.select(cfg, "hydra.overrides.task", default=None) or []),
        "params": dict(OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}),
    }
    return out


def cell(group: Group) -> str:
    return f"{group.arch}-{group.aug}"


def _mean(group: Group, key: str):
    stat = group.stats.get(key)
    return None if stat is None else stat.mean


def severity_charts(groups: Sequence[Group]) -> dict:
    """`report/severity/<family>`: per family, one line per cell (mean over seeds) of accuracy against
    severity, 0 being the i.i.d. test set."""
    import wandb

    every = {k: None for g in groups for r in g.runs for k in (r.metrics or {})}
    charts = {}
    for family in families(every):
        xs, ys, keys = [], [], []
        for g in groups:
            points = [(k, _mean(g, severity_key(family, k))) for k in (0, *SEVERITIES)]
            points = [(x, y) for x, y in points if y is not None]
            if len(points) > 1:
                xs.append([x for x, _ in points])
                ys.append([y for _, y in points])
                keys.append(cell(g))
        if ys:
            charts[f"report/severity/{family}"] = wandb.plot.line_series(
                xs=xs, ys=ys, keys=keys, title=f"Accuracy vs severity: {family}", xname="severity"
            )
    return charts


# The study's main table as native bar charts, one per column: chart key -> (metric, title).
MAIN_BARS = {
    "report/iid_acc": (test_key(IID, "acc"), "i.i.d. accuracy per cell"),
    "report/position_s5_acc": (SHORTCUT_KEY, "Accuracy with the quadrants swapped (position s5)"),
    "report/ood_acc": (test_key(OOD, "acc"), "o.o.d. accuracy per cell (mean over the catalog)"),
    "report/mix_acc": (test_key(MIX, "acc"), "Accuracy on the mix per cell"),
}


def main_bars(groups: Sequence[Group]) -> dict:
    """The main table's columns as bar charts of the mean per cell, so the report run's default workspace
    shows the study's table without a panel built by hand."""
    import wandb

    charts = {}
    for chart, (metric, title) in MAIN_BARS.items():
        rows = [[cell(g), v, g.n] for g in groups if (v := _mean(g, metric)) is not None]
        if rows:
            table = wandb.Table(columns=["cell", metric, "runs"], data=rows)
            charts[chart] = wandb.plot.bar(table, "cell", metric, title=title)
    return charts


def runs_table(result: dict):
    """`report/results`: one row per finished run, its identity and headline metrics (results.csv has all)."""
    import wandb

    finished = [r for r in result["runs"] if r.finished]
    keys = list(dict.fromkeys(k for r in finished for k in headline_keys(r.metrics)))
    columns = ["run_dir", "cell", "arch", "aug", "seed", "variant", "compared", *keys]
    rows = [
        [
            r.path.name,
            f"{r.group[0]}-{r.group[1]}",
            r.arch,
            r.aug,
            r.seed,
            r.variant,
            r.compared,
            *(r.metrics.get(k) for k in keys),
        ]
        for r in finished
    ]
    return wandb.Table(columns=columns, data=rows)


def log_sweep_summary(
    sweep: Path, result: dict, logger: DictConfig, config: DictConfig | None = None
) -> None:
    """One W&B run (job_type=report) in the jobs' group."""
    import wandb

    from shapeshift.tracking.loggers import wandb_mode

    run = wandb.init(
        project=logger.get("project"),
        entity=logger.get("entity"),
        dir=str(sweep),
        group=f"{sweep.parent.name}_{sweep.name}",
        name=f"report-{sweep.name}",
        job_type="report",
        mode=logger.get("mode") or wandb_mode(),
        config=sweep_config(sweep, config),
    )
    try:
        out, plots, groups = result["out"], result["plots"].values(), result["groups"]
        images = {
            f"report/{Path(name).stem}": wandb.Image(str(out / name))
            for name in plots
            if not name.startswith(SEVERITY_PLOT)
        }
        run.log(
            {"report/results": runs_table(result), **severity_charts(groups), **main_bars(groups), **images}
        )
        if logger.get("artifacts", True):
            log_report_files(run, out, [REPORT_FILE, CSV_FILE, *plots], sweep.name)
    finally:
        run.finish()
