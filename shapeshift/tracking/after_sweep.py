"""A Hydra callback: every multirun that finishes ends with its report (report.md, results.csv, plots) and,
when its jobs log to W&B, one more W&B run of the sweep's group (shapeshift/tracking/wandb_run.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from shapeshift.reporting import print_summary, report
from shapeshift.tracking.loggers import is_wandb
from shapeshift.tracking.wandb_run import log_sweep_summary

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
            if is_wandb(logger):
                log_sweep_summary(sweep, result, logger, config)
        except Exception as err:  # noqa: BLE001 - a report problem must not fail a finished sweep
            log.warning(
                "the sweep finished but its report failed (%s); run: python -m shapeshift.report %s",
                err,
                sweep,
            )
