"""A Hydra callback: every multirun that finishes ends with its report (report.md, results.csv, plots)."""

from __future__ import annotations

import logging
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
        try:
            print_summary(report([str(config.hydra.sweep.dir)], plots=self.plots))
        except Exception as err:  # noqa: BLE001 - a report problem must not fail a finished sweep
            log.warning("the sweep finished but its report failed (%s); run: python -m shapeshift.report %s",
                        err, config.hydra.sweep.dir)
