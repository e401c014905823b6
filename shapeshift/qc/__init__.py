"""Quality control for deployment: detectors fitted on a run's own training data, a gate that flags likely
errors, a novelty threshold, and label-free accuracy estimates.

    detectors.py  msp, energy, mahalanobis, knn (+ *_spatial, *_stages), reference: a score per image,
                  higher = more likely fine
    gate.py       thresholds; AUROC, FPR95, coverage; failure detection (AUROC, AURC, E-AURC); ATC
    estimates.py  label-free accuracy estimates per set (atc, agreement) and their interval
    bank.py       a run's detectors: fit, calibrate (choose the gate), score, save to and load from its folder
    callback.py   the Lightning callback that fits and calibrates the bank before a test and scores the sets

The features the detectors read are the model's (`shapeshift/models/features.py`); reference runs are
loaded by `shapeshift/engine/references.py`; the audit command that applies a run's gate to real images is
`shapeshift/audit/`. Rule: imports neither engine/ nor the commands (`tests/test_layers.py` holds it to that).
"""
