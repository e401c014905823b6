"""What W&B gets beyond the summary: metrics against severity that the dashboard plots and averages over
grouped runs, one table of every evaluation set, and the most confidently wrong images of each set."""

from __future__ import annotations

import numpy as np

from shapeshift.data import IID
from shapeshift.metric_keys import SEVERITY_KEY

PER_SEVERITY = ("acc", "ece", "coverage", "accepted_acc")  # plus each detector's auroc, if measured


def _curve_metrics(metrics: dict) -> list[str]:
    return list(PER_SEVERITY) + sorted(
        {m["metric"] for k in metrics if (m := SEVERITY_KEY.match(k)) and m["metric"].startswith("auroc/")}
    )


def log_severity(run, metrics: dict) -> None:
    """`severity/<family>/<metric>` against the step metric `severity` (0 = the i.i.d. test set)."""
    run.define_metric("severity")
    families = sorted({m["family"] for k in metrics if (m := SEVERITY_KEY.match(k))})
    names = _curve_metrics(metrics)
    for family in families:
        run.define_metric(f"severity/{family}/*", step_metric="severity", summary="none")
    for k in range(0, 6):
        row = {}
        for family in families:
            for metric in names:
                key = f"test/{IID}/{metric}" if k == 0 else f"test/{family}/s{k}/{metric}"
                if isinstance(metrics.get(key), float):
                    row[f"severity/{family}/{metric}"] = metrics[key]
        if row:
            run.log({"severity": k, **row})


def results_table(metrics: dict, set_names: list[str]):
    """One row per evaluation set: set, family, severity, then every metric measured on it."""
    import wandb

    names = _curve_metrics(metrics)
    rows = []
    for name in set_names:
        family, _, sev = name.partition("/s")
        rows.append(
            [
                name,
                family if sev else name,
                int(sev) if sev else 0,
                *(metrics.get(f"test/{name}/{m}") for m in names),
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


def log_catalog(run, metrics: dict, datamodule, model, examples: int = 4) -> None:
    import wandb

    log_severity(run, metrics)
    run.log({"results": results_table(metrics, datamodule.test_set_names)})
    if not getattr(model, "test_predictions", ()):
        return
    predicted, confidence = (t.numpy() for t in model.test_predictions)
    classes, media, start = datamodule.class_names, {}, 0
    for name in datamodule.test_set_names:  # the test loop saw the sets in this order
        images, labels = datamodule.arrays(name)
        p, c = predicted[start : start + len(labels)], confidence[start : start + len(labels)]
        start += len(labels)
        media[f"examples/{name}"] = [
            wandb.Image(
                images[i], caption=f"true {classes[labels[i]]}, predicted {classes[p[i]]} ({c[i]:.3f})"
            )
            for i in confidently_wrong(p, c, labels, examples)
        ]
    run.log(media)
