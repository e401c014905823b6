"""What a train run shows in W&B: the headline summary (shapeshift/tracking/wandb_results.py), accuracy
against severity (one panel per family, averaged over grouped runs), one compact table of the evaluation
sets, and one table of the most confidently wrong images of each set. The rest stays in `metrics.json`
(an artifact)."""

from __future__ import annotations

import numpy as np

from shapeshift.runs.metric_keys import SEVERITIES, severity_key, test_key
from shapeshift.tracking.wandb_results import families, headline

# The compact table's metrics of every set; then the gate detector's and every accuracy estimate.
SET_METRICS = ("acc", "ece", "coverage", "accepted_acc")
GATE_SET_METRICS = ("auroc/{gate}", "failure_auroc/{gate}", "eaurc/{gate}")


def log_severity(run, metrics: dict) -> None:
    """`severity/<family>/acc` against the step metric `severity` (0 = the i.i.d. test set): one line panel
    per family, which W&B averages over the runs of a group."""
    run.define_metric("severity")
    names = families(metrics)
    for family in names:
        run.define_metric(f"severity/{family}/*", step_metric="severity", summary="none")
    for k in (0, *SEVERITIES):
        row = {}
        for family in names:
            key = severity_key(family, k)
            if isinstance(metrics.get(key), float):
                row[f"severity/{family}/acc"] = metrics[key]
        if row:
            run.log({"severity": k, **row})


def set_columns(metrics: dict, set_names: list[str]) -> list[str]:
    """The compact table's metric columns: SET_METRICS, the gate's (auroc, failure_auroc, eaurc) and each
    accuracy estimator's estimate, of those measured on some evaluation set."""
    gate = metrics.get("qc/gate")
    prefixes = [test_key(s, "") for s in set_names]  # test/<set>/
    measured = {k[len(p) :] for p in prefixes for k in metrics if k.startswith(p)}
    estimates = sorted(m for m in measured if m.startswith("acc_estimate/"))
    gated = [m.format(gate=gate) for m in GATE_SET_METRICS] if isinstance(gate, str) else []
    return [m for m in (*SET_METRICS, *gated, *estimates) if m in measured]


def results_table(metrics: dict, set_names: list[str]):
    """One row per evaluation set: set, family, severity, then `set_columns`."""
    import wandb

    names = set_columns(metrics, set_names)
    rows = []
    for name in set_names:
        family, _, sev = name.partition("/s")
        rows.append(
            [
                name,
                family if sev else name,
                int(sev) if sev else 0,
                *(metrics.get(test_key(name, m)) for m in names),
            ]
        )
    return wandb.Table(columns=["set", "family", "severity", *names], data=rows)


def confidently_wrong(
    predicted: np.ndarray, confidence: np.ndarray, labels: np.ndarray, n: int
) -> np.ndarray:
    """The `n` wrong predictions made with the highest confidence; then the least confident right ones."""
    wrong = np.flatnonzero(predicted != labels)
    right = np.flatnonzero(predicted == labels)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    right = right[np.argsort(confidence[right], kind="stable")]
    return np.concatenate([wrong, right])[:n]


def examples_table(datamodule, model, examples: int):
    """One row per example image: set, image, true class, predicted class, confidence, right or not."""
    import wandb

    predicted, confidence = (t.numpy() for t in model.test_run.predictions)
    classes, rows, start = datamodule.class_names, [], 0
    for name in datamodule.test_set_names:  # the test loop saw the sets in this order
        images, labels = datamodule.arrays(name)
        p, c = predicted[start : start + len(labels)], confidence[start : start + len(labels)]
        start += len(labels)
        for i in confidently_wrong(p, c, labels, examples):
            truth, guess = classes[labels[i]], classes[p[i]]
            rows.append([name, wandb.Image(images[i]), truth, guess, round(float(c[i]), 6), truth == guess])
    columns = ["set", "image", "true", "predicted", "confidence", "correct"]
    return wandb.Table(columns=columns, data=rows)


def log_catalog(run, metrics: dict, datamodule, model, examples: int = 4) -> None:
    """The headline as the run's summary (once, not a one-point history), then the curves and tables."""
    run.summary.update(headline(metrics))
    log_severity(run, metrics)
    tables = {"results": results_table(metrics, datamodule.test_set_names)}
    if model.test_run.predictions:
        tables["examples"] = examples_table(datamodule, model, examples)
    run.log(tables)
