"""What of a result W&B gets, torch-free (train runs and the report run share it): the headline metrics a
user compares, and the result files logged as artifacts. Everything else stays in `metrics.json`, which the
artifact carries whole. `wandb` is imported only where it is used."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from shapeshift.runs.metric_keys import (
    CONSISTENCY_KEY,
    ESTIMATE_ERROR,
    IID,
    MIX,
    OOD,
    RATIO_KEY,
    SEVERITY_KEY,
    SHORTCUT_KEY,
    is_number,
    test_key,
)

# The run's headline, in this order (those the run measured): accuracy, calibration, the gate, training and
# cost. Then, computed per run: each family's mean accuracy, the gate detector's headline numbers and every
# accuracy estimator's error (HEADLINE_PATTERNS).
HEADLINE = (
    test_key(IID, "acc"),
    test_key(OOD, "acc"),
    test_key(MIX, "acc"),
    SHORTCUT_KEY,
    RATIO_KEY,
    CONSISTENCY_KEY,
    test_key(IID, "ece"),
    test_key(OOD, "ece"),
    test_key(MIX, "coverage"),
    test_key(MIX, "accepted_acc"),
    test_key(OOD, "coverage"),
    test_key(OOD, "accepted_acc"),
    "val/acc",
    "val/loss",
    "epochs",
    "time/fit_s",
    "memory/peak_mib",
)
# Of the gate's detector (`qc/gate`): failure detection on the mixed set, novelty detection o.o.d.
GATE_METRICS = tuple(  # formatted with the run's gate detector
    test_key(s, m, "{gate}") for s, m in ((MIX, "eaurc"), (MIX, "failure_auroc"), (OOD, "auroc"))
)
# Strings that say what the numbers are of.
HEADLINE_TEXT = ("qc/gate", "eval/checkpoint")

RESULT_FILES = ("metrics.json", "evaluation.json", "risk_coverage.json")  # those present are logged


def families(metrics: dict) -> list[str]:
    return sorted({m["family"] for k in metrics if (m := SEVERITY_KEY.match(k))})


def headline_keys(metrics: dict) -> list[str]:
    """The headline keys `metrics` holds a number for: HEADLINE, `test/<family>/acc`, the gate's metrics,
    `test/acc_estimate_mae/*`."""
    gate = metrics.get("qc/gate")
    keys = [
        *HEADLINE,
        *(test_key(f, "acc") for f in families(metrics)),
        *((k.format(gate=gate) for k in GATE_METRICS) if isinstance(gate, str) else ()),
        *sorted(k for k in metrics if k.startswith(ESTIMATE_ERROR)),
    ]
    return [k for k in dict.fromkeys(keys) if is_number(metrics.get(k))]


def headline(metrics: dict) -> dict:
    """The run summary W&B shows and groups by: the headline numbers and the strings that label them."""
    text = {k: metrics[k] for k in HEADLINE_TEXT if isinstance(metrics.get(k), str)}
    return {**{k: metrics[k] for k in headline_keys(metrics)}, **text}


def _artifact(name: str, kind: str, files: Iterable[Path], metadata: dict | None = None):
    import wandb

    artifact = wandb.Artifact(name, type=kind, metadata=metadata or {})
    for path in files:
        artifact.add_file(str(path), name=path.name)
    return artifact


def log_run_files(run, folder: Path, metadata: dict | None = None) -> list[str]:
    """`results-<run id>` (type `results`): the run folder's RESULT_FILES that exist. Returns their names."""
    files = [folder / name for name in RESULT_FILES if (folder / name).is_file()]
    if files:
        run.log_artifact(_artifact(f"results-{run.id}", "results", files, metadata))
    return [p.name for p in files]


def log_checkpoint(run, checkpoint: Path, alias: str, metadata: dict | None = None) -> None:
    """`model-<run id>` (type `model`): the evaluated checkpoint, aliased by which one it is (best, last)."""
    artifact = _artifact(f"model-{run.id}", "model", [checkpoint], metadata)
    alias = "".join(c if c not in "/:" else "_" for c in str(alias))  # W&B aliases take neither
    run.log_artifact(artifact, aliases=["latest", alias])


def log_report_files(run, out: Path, names: Iterable[str], sweep_name: str) -> None:
    """`report-<sweep>` (type `report`): report.md, results.csv and the plots."""
    files = [out / n for n in names if (out / n).is_file()]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sweep_name)
    run.log_artifact(_artifact(f"report-{safe}", "report", files))


def log_result_artifacts(run, options, folder: Path, checkpoint: Path | None, alias: str) -> None:
    """What `logger.artifacts` and `logger.log_checkpoint` ask for (`options`: the logger config)."""
    if options.get("artifacts", True):
        log_run_files(run, folder, {"run_dir": str(folder)})
    if options.get("log_checkpoint", False) and checkpoint is not None and checkpoint.is_file():
        log_checkpoint(run, checkpoint, alias, {"run_dir": str(folder), "file": checkpoint.name})
