"""One test loop of the Classifier, as a plain object: the detectors it scores with, and what it measured.

The one way a test's results leave the module (`model.test_run`): `trainer.test` fills it, the quality
control callback adds what its gate rested on, and `train`, `evaluate` and W&B read it. Not a Module, so
the detectors it carries stay out of the module tree: they are no part of the weights or the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TestRun:
    __test__ = False  # pytest: not a test class

    detectors: Any = None  # a calibrated qc.bank.DetectorBank scored in the test loop's forward pass
    metrics: dict[str, float] = field(default_factory=dict)  # every metric of the test, per set
    predictions: tuple = ()  # (predicted class, confidence) per image, in the evaluation sets' order
    qc_curves: dict = field(default_factory=dict)  # the gate's risk-coverage curve (risk_coverage.json)
    qc_summary: dict = field(default_factory=dict)  # which gate the QC metrics describe, its references
