"""Evaluate trained runs again, without retraining: on a shift added after training, or a chosen few.

    python -m shapeshift.evaluate run=outputs/runs/2026-11-28/15-30-27-063380
    python -m shapeshift.evaluate run=outputs/sweeps/2026-11-28/16-00-00-000000 families=[rotation,squash]
    python -m shapeshift.evaluate run=<sweep dir> reference=<sweep dir>   # each run's references: the others

Each run is rebuilt from its own saved config (`.hydra/config.yaml`), not today's defaults; only the
catalog is today's. Results go to `evaluation.json` beside the run's `metrics.json`, which is never touched.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from shapeshift.config.errors import ConfigError
from shapeshift.console.errors import command_errors
from shapeshift.console.progress import track
from shapeshift.data import shifts
from shapeshift.engine.pipeline import build_datamodule, quality_control, test_metrics
from shapeshift.engine.references import override_qc, qc_references
from shapeshift.engine.restore import RunError, checkpoint_path, load_model, load_run_config
from shapeshift.engine.runtime import AUTO, choose_deterministic, fast_cpu_math
from shapeshift.runs.folder import METRICS_FILE, find_runs, write_files, write_metrics
from shapeshift.runs.metric_keys import IID, OOD, test_key, tidy
from shapeshift.runs.provenance import COMMIT_KEY, PRECISION_KEY, code_commit
from shapeshift.tracking.loggers import silence_known_noise

log = logging.getLogger("shapeshift")
fast_cpu_math()  # before torch starts its thread pool (see runtime.py: denormals slow CPU backward 3-5x)


def evaluate_run(
    run_dir: Path,
    shift: DictConfig,
    families: list[str] | None,
    out: str = "evaluation.json",
    accelerator: str = AUTO,
    reference=None,
    gate: str | None = None,
) -> dict:
    if Path(out).name == METRICS_FILE:
        raise ConfigError(f"out={out} would overwrite the training results; choose another name")
    cfg = load_run_config(run_dir)
    # Today's families, at the run's own set sizes (so the i.i.d. test set and shapes are the run's).
    today = OmegaConf.to_container(shift, resolve=True).get("families") or {}
    selected = shifts.select(today, list(families) if families else None)
    with open_dict(cfg):
        cfg.shift.families = selected
    datamodule = build_datamodule(cfg, augment=False)
    # `gate=` and `reference=` given here replace the run's own; checked before anything is written.
    override_qc(cfg, gate, reference)
    references = qc_references(cfg, cfg.qc.reference, run_dir)
    weights = checkpoint_path(run_dir, cfg)
    model = load_model(run_dir, cfg, datamodule.test_set_names, weights)
    # The run's own precision and detectors (loaded from qc.pt, or fitted for runs made before it existed).
    # `auto`: the GPU when there is one. Deterministic where torch can be (not reflection padding on CUDA).
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        deterministic=choose_deterministic(AUTO, accelerator)[0],
        default_root_dir=str(run_dir),
        precision=cfg.trainer.precision,
        callbacks=list(qc := quality_control(cfg, run_dir, references)),  # a copy: Lightning adds to it
    )
    t0 = time.perf_counter()
    metrics = test_metrics(trainer, model, datamodule)
    metrics.update(
        {
            "checkpoint": str(weights.relative_to(run_dir)),
            "families": sorted(selected),
            PRECISION_KEY: cfg.trainer.precision,
            COMMIT_KEY: code_commit(),  # the code that evaluated it, not the one that trained it
            "time/test_s": time.perf_counter() - t0,
        }
    )
    metrics = tidy(metrics)
    # Detectors fitted now (a run made before qc.pt existed) are kept for the next evaluation. The
    # risk-coverage curve stays the training's, like metrics.json: this one is in `out` already.
    write_files(run_dir, {k: v for callback in qc for k, v in callback.files_to_save().items()})
    write_metrics(run_dir, metrics, name=out)
    return metrics


def runs_to_evaluate(path: str) -> list[Path]:
    """The run itself, or every run below a sweep folder."""
    try:
        runs = find_runs(Path(path).expanduser())
    except FileNotFoundError as err:
        raise RunError(str(err)) from None
    if not runs:
        raise RunError(f"no runs under {path} (a run dir holds .hydra/config.yaml)")
    return runs


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    silence_known_noise()
    with command_errors():
        runs = runs_to_evaluate(cfg.run)
        if cfg.families:
            shifts.select(cfg.shift.families, list(cfg.families))
    failed = 0
    for run_dir in track(runs, "evaluate: runs"):  # one run that cannot be evaluated does not stop the others
        try:
            metrics = evaluate_run(
                run_dir, cfg.shift, cfg.families, cfg.out, cfg.accelerator, cfg.reference, cfg.gate
            )
        except ConfigError as err:
            failed += 1
            print(f"shapeshift: {run_dir}: {err}", file=sys.stderr)
            continue
        iid, ood = metrics.get(test_key(IID, "acc")), metrics.get(test_key(OOD, "acc"))
        print(f"{run_dir}: iid {iid}, ood {ood} -> {run_dir / cfg.out}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
