"""A Hydra callback: every multirun that finishes ends with its report (report.md, results.csv, plots) and,
when its jobs log to W&B, one more W&B run of the sweep's group holding the report's table and plots."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from shapeshift.reporting import print_summary, report

log = logging.getLogger("shapeshift")


class ReportAfterSweep(Callback):
    def __init__(self, enabled: bool = True, plots: bool = True):
        self.enabled, self.plots = enabled, plots

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        sweep = Path(config.hydra.sweep.dir)
        try:
            result = report([str(sweep)], plots=self.plots)
            print_summary(result)
            logger = config.get("logger") or {}
            if str(logger.get("_target_", "")).endswith("WandbLogger"):
                log_sweep_summary(sweep, result, logger)
        except Exception as err:  # noqa: BLE001 - a report problem must not fail a finished sweep
            log.warning(
                "the sweep finished but its report failed (%s); run: python -m shapeshift.report %s",
                err,
                sweep,
            )


def log_sweep_summary(sweep: Path, result: dict, logger: DictConfig) -> None:
    """One W&B run (job_type=report) in the jobs' group: the per-run results table and the plots."""
    import wandb

    from shapeshift.loggers import wandb_mode

    with (result["out"] / "results.csv").open() as f:
        rows = list(csv.reader(f))
    run = wandb.init(
        project=logger.get("project"),
        entity=logger.get("entity"),
        dir=str(sweep),
        group=f"{sweep.parent.name}_{sweep.name}",
        name=f"report-{sweep.name}",
        job_type="report",
        mode=logger.get("mode") or wandb_mode(),
    )
    try:
        run.log(
            {
                "report/results": wandb.Table(columns=rows[0], data=rows[1:]),
                **{
                    f"report/{Path(name).stem}": wandb.Image(str(result["out"] / name))
                    for name in result["plots"].values()
                },
            }
        )
    finally:
        run.finish()
