"""Quality control for deployment: o.o.d. detectors fitted on a run's own training data, and a gate.

    detectors.py  msp, energy, mahalanobis, knn (+ *_spatial): a score per image, higher = more i.i.d.
    gate.py       the threshold that keeps `keep` of i.i.d. validation images; AUROC, FPR95, coverage
    bank.py       the fitted detectors of a run: fit, score, save to and load from the run folder
    callback.py   the Lightning callback that fits the bank after training and scores the test sets

The features the detectors read are the model's (`shapeshift/models/features.py`); the audit command that
applies a run's gate to real images is `shapeshift/audit/`. This package imports neither the pipeline nor
the commands: `tests/test_layers.py` holds it to that.
"""
