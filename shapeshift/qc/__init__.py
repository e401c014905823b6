"""Quality control for deployment: o.o.d. detectors fitted on a run's own training data, and a gate.

    features.py   the features detectors read: the last feature map's channel means and 2x2 means
    detectors.py  msp, energy, mahalanobis, knn (+ *_spatial): a score per image, higher = more i.i.d.
    gate.py       the threshold that keeps `keep` of i.i.d. validation images; AUROC, FPR95, coverage
    bank.py       the fitted detectors of a run: fit, score, save to and load from the run folder
"""
