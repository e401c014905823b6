"""Lightning callback: before a test, fit (or load) the run's detectors on the weights under test; after
it, save them and the gate's risk-coverage curve into the run folder."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L

from shapeshift.qc import bank as qc_bank
from shapeshift.run_dir import QC_FILE, RISK_COVERAGE_FILE

log = logging.getLogger("shapeshift")


class QualityControl(L.Callback):
    def __init__(
        self,
        detectors: Sequence[str],
        gate: str,
        keep: float = 0.95,
        k: int = 10,
        run_dir: str | Path | None = None,
    ):
        self.detectors, self.gate, self.keep, self.k = list(detectors), gate, keep, k
        self.run_dir = Path(run_dir) if run_dir else None

    def bank_for(self, model, datamodule, bf16: bool = False) -> qc_bank.DetectorBank:
        """The saved bank when it was fitted with this config on these weights, else a freshly fitted one."""
        fitted_on = {k: model.loaded_checkpoint[k] for k in ("epoch", "step") if k in model.loaded_checkpoint}
        path = self.run_dir / QC_FILE if self.run_dir else None
        bank = qc_bank.load(path, self.detectors, self.gate, self.keep, self.k, fitted_on) if path else None
        if bank is None:
            bank = qc_bank.DetectorBank(self.detectors, self.gate, self.keep, self.k)
            bank.fit(model, datamodule, bf16=bf16)
            bank.fitted_on = fitted_on
            if path is not None:
                qc_bank.save(bank, path)
        return bank.to(model.device)

    def on_test_start(self, trainer, pl_module) -> None:
        bf16 = "bf16" in str(trainer.precision)
        pl_module.attach_qc(self.bank_for(pl_module, trainer.datamodule, bf16))

    def on_test_end(self, trainer, pl_module) -> None:
        if self.run_dir is not None and pl_module.qc_curves:
            (self.run_dir / RISK_COVERAGE_FILE).write_text(json.dumps(pl_module.qc_curves, indent=1) + "\n")
        pl_module.attach_qc(None)
