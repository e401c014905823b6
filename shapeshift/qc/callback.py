"""Lightning callback: before a test, fit (or load) the run's detectors on the weights under test and
calibrate them (with the references, if any); after it, say what the gate rested on.

It writes nothing: what it fitted is handed to the run folder's owner (`files_to_save`), which decides
where and when (`shapeshift.runs`: metrics.json last)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import lightning as L
from omegaconf import OmegaConf
from torch import nn

from shapeshift.config.schema import QCConfig
from shapeshift.models.test_run import TestRun
from shapeshift.qc import bank as qc_bank
from shapeshift.qc import calibration
from shapeshift.runs.folder import CALIBRATION_FILE, QC_FILE

log = logging.getLogger("shapeshift")


class QualityControl(L.Callback):
    def __init__(
        self,
        settings: QCConfig,
        saved: str | Path | None = None,
        references: Sequence[tuple[str, nn.Module]] = (),
    ):
        """`settings`: the run's `qc` config. `saved`: a run folder whose qc.pt is reused when it was
        fitted with these detectors on the weights under test. `references`: (run dir, classifier) pairs
        from `shapeshift.engine.references`."""
        self.settings, self.references = settings, list(references)
        self.saved = Path(saved) / QC_FILE if saved else None
        self.saved_calibration = Path(saved) / CALIBRATION_FILE if saved else None
        self.fitted: qc_bank.DetectorBank | None = None  # fitted here, not loaded: for the folder to save
        self.calibrated: tuple[str, dict] | None = None  # (its key, the state) when calibrated here

    def bank_for(self, model, datamodule, bf16: bool = False) -> qc_bank.DetectorBank:
        """The saved bank when it was fitted with these detectors on these weights, else a freshly fitted
        one; calibrated on the validation images with the references attached, on the model's device."""
        fitted_on = {k: model.loaded_checkpoint[k] for k in ("epoch", "step") if k in model.loaded_checkpoint}
        bank = qc_bank.load(self.saved, self.settings, fitted_on) if self.saved else None
        if bank is None:
            bank = qc_bank.DetectorBank(self.settings)
            bank.fit(model, datamodule, bf16=bf16)
            bank.fitted_on = fitted_on
            self.fitted = bank
        bank.attach_references([m for _, m in self.references], [r for r, _ in self.references])
        bank = bank.to(model.device)
        select_on = self.settings.select_on or []
        if OmegaConf.is_config(select_on):
            select_on = OmegaConf.to_container(select_on, resolve=True)
        wanted = calibration.key(bank, model, datamodule, select_on, bf16)
        if not calibration.restore(bank, self.saved_calibration, wanted):
            bank.calibrate(model, datamodule, select_on, bf16=bf16)
            self.calibrated = (wanted, calibration.state(bank))
        return bank

    def files_to_save(self) -> dict[str, Callable[[Path], None]]:
        """qc.pt when the detectors were fitted here (a loaded bank is on disk already), and the
        calibration when it was computed here (for the next audit or evaluation with the same inputs)."""
        files: dict[str, Callable[[Path], None]] = {}
        if self.fitted is not None:
            files[QC_FILE] = partial(qc_bank.save, self.fitted)
        if self.calibrated is not None:
            files[CALIBRATION_FILE] = lambda path, c=self.calibrated: calibration.save(path, *c)
        return files

    def on_test_start(self, trainer, pl_module) -> None:
        bf16 = "bf16" in str(trainer.precision)
        pl_module.test_run = TestRun(detectors=self.bank_for(pl_module, trainer.datamodule, bf16))

    def on_test_end(self, trainer, pl_module) -> None:
        run = pl_module.test_run
        if run.detectors is not None:
            run.qc_summary, run.detectors = run.detectors.summary(), None  # the test's memory let go
