"""Lightning callback: before a test, fit (or load) the run's detectors on the weights under test and
calibrate them (with the references, if any); after it, save them and the gate's risk-coverage curve."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from torch import nn

from shapeshift.config.schema import AUTO_GATE
from shapeshift.qc import bank as qc_bank
from shapeshift.runs.folder import QC_FILE, RISK_COVERAGE_FILE

log = logging.getLogger("shapeshift")


class QualityControl(L.Callback):
    def __init__(
        self,
        detectors: Sequence[str],
        gate: str = AUTO_GATE,
        keep: float = 0.95,
        k: int = 10,
        run_dir: str | Path | None = None,
        novelty: str | None = None,
        select_on: Sequence = (),
        references: Sequence[tuple[str, nn.Module]] = (),
    ):
        self.detectors, self.gate, self.keep, self.k = list(detectors), gate, keep, k
        self.novelty, self.select_on, self.references = novelty, list(select_on), list(references)
        self.run_dir = Path(run_dir) if run_dir else None

    def bank_for(self, model, datamodule, bf16: bool = False) -> qc_bank.DetectorBank:
        """The saved bank when it was fitted with these detectors on these weights, else a freshly fitted
        one; calibrated on the validation images with the references attached, on the model's device."""
        fitted_on = {k: model.loaded_checkpoint[k] for k in ("epoch", "step") if k in model.loaded_checkpoint}
        path = self.run_dir / QC_FILE if self.run_dir else None
        args = (self.gate, self.keep, self.novelty)
        bank = qc_bank.load(path, self.detectors, self.k, fitted_on, *args) if path else None
        if bank is None:
            bank = qc_bank.DetectorBank(self.detectors, self.gate, self.keep, self.k, self.novelty)
            bank.fit(model, datamodule, bf16=bf16)
            bank.fitted_on = fitted_on
            if path is not None:
                qc_bank.save(bank, path)
        bank.attach_references([m for _, m in self.references], [r for r, _ in self.references])
        bank = bank.to(model.device)
        bank.calibrate(model, datamodule, self.select_on, bf16=bf16)
        return bank

    def on_test_start(self, trainer, pl_module) -> None:
        bf16 = "bf16" in str(trainer.precision)
        pl_module.attach_qc(self.bank_for(pl_module, trainer.datamodule, bf16))

    def on_test_end(self, trainer, pl_module) -> None:
        if self.run_dir is not None and pl_module.qc_curves:
            (self.run_dir / RISK_COVERAGE_FILE).write_text(json.dumps(pl_module.qc_curves, indent=1) + "\n")
        pl_module.qc_summary = pl_module.qc.summary() if pl_module.qc is not None else {}
        pl_module.attach_qc(None)
