"""Train one architecture with one augmentation, evaluate it on i.i.d. and o.o.d. sets, write metrics.json.

    python -m shapeshift.train                                       # default experiment
    python -m shapeshift.train -m arch=cnn,gap,resnet18,resnet18_aa aug=none,basic

A run directory whose `metrics.json` exists is finished: running the same command into it again skips
the job (`force=true` reruns it). A run with a `checkpoints/last.ckpt` but no `metrics.json` was
interrupted: it resumes from its newest epoch and ends with the metrics an uninterrupted run would give.
Either happens only when the folder's config fingerprint (`run.json`) matches; a folder holding another
config's run is refused with one line and left as it was.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from shapeshift.config.errors import ConfigError
from shapeshift.config.preflight import check_command_line
from shapeshift.config.validation import validate
from shapeshift.console.errors import command_errors
from shapeshift.engine.checkpointing import run_callbacks
from shapeshift.engine.distributed import ddp_launch_scope, evaluation_trainer, is_lead, leave_process_group
from shapeshift.engine.pipeline import (
    build_backbone,
    build_classifier,
    build_datamodule,
    quality_control,
    test_metrics,
)
from shapeshift.engine.references import qc_references
from shapeshift.engine.runtime import (
    checkpoint_epoch,
    choose_deterministic,
    choose_precision,
    fast_cpu_math,
    gpu_peak_memory_mib,
    peak_memory_mib,
    release_memory,
    reset_peak_memory,
)
from shapeshift.engine.start_from import StartFrom
from shapeshift.runs.fingerprint import fingerprint_keys
from shapeshift.runs.folder import CHECKPOINT_DIR, METRICS_FILE, arch_name, aug_label, checkpoint_file
from shapeshift.runs.lifecycle import Interrupted, RunFolder
from shapeshift.runs.metric_keys import tidy
from shapeshift.tracking.loggers import build_logger, finish_wandb, route_lightning_logs, silence_known_noise
from shapeshift.tracking.wandb_catalog import log_catalog
from shapeshift.tracking.wandb_results import log_result_artifacts

log = logging.getLogger("shapeshift")
fast_cpu_math()  # before torch starts its thread pool (see runtime.py: denormals slow CPU backward 3-5x)


def run_identity(cfg: DictConfig) -> dict:
    """Arch and aug as the user chose them (the config group option names), and the sweep they belong to."""
    choices, group = None, None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = hc.runtime.choices
        if hc.mode == RunMode.MULTIRUN:
            sweep = Path(hc.sweep.dir)
            group = f"{sweep.parent.name}_{sweep.name}"
    return {
        "arch": arch_name(choices, cfg.arch._target_),
        "aug": aug_label(cfg.aug.name, cfg.aug.magnitude),
        "seed": int(cfg.seed),
        "group": group,
    }


def torch_threads(cfg: DictConfig) -> int | None:
    """Threads per job: as configured, else the cores shared out among a parallel launcher's jobs."""
    if cfg.torch_threads:
        return cfg.torch_threads
    if HydraConfig.initialized():
        launcher = HydraConfig.get().launcher
        if launcher.get("cpus_per_task"):  # submitit: the cores the scheduler gave this job
            return int(launcher.cpus_per_task)
        n_jobs = launcher.get("n_jobs")  # joblib: jobs side by side on this machine
        if n_jobs:
            cores = os.cpu_count() or 1
            return max(1, cores // (cores if n_jobs < 0 else min(n_jobs, cores)))
    return None


def train(cfg: DictConfig, callbacks: list[Callback] | None = None) -> dict:
    """Fit, test the chosen checkpoint on every evaluation set, write `metrics.json`, return the metrics."""
    release_memory()  # what earlier jobs of this multirun left behind
    reset_peak_memory()  # from here on, this job's own peak
    silence_known_noise()
    route_lightning_logs()
    validate(cfg)
    ident = run_identity(cfg)
    identity = {k: ident[k] for k in ("arch", "aug", "seed")}
    resolve_hardware_choices(cfg)  # before fingerprinting: a run is tied to what it computed
    lead = is_lead()  # under DDP every rank runs this; only rank 0 writes the folder, logs and evaluates
    uses_wandb = str(OmegaConf.select(cfg, "logger._target_", default="")).endswith("WandbLogger")
    # Checked and loaded before the folder is claimed: a bad reference fails in one line, writing nothing.
    references = qc_references(cfg, cfg.qc.reference, Path(cfg.output_dir)) if lead else []
    configured = run_callbacks(cfg, Path(cfg.output_dir) / CHECKPOINT_DIR)  # checked: last.ckpt will exist
    start = StartFrom.open(cfg)  # ckpt_path, checked before the fingerprint hashes it (None without one)
    folder = RunFolder.claim(
        Path(cfg.output_dir),
        fingerprint_keys(cfg, debug_choice()),
        identity,
        force=cfg.force,
        wandb=uses_wandb,
        lead=lead,
    )
    if folder.finished is not None:
        return folder.finished
    if threads := torch_threads(cfg):
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    out = folder.path
    # Lightning's smoke flag: one batch per stage, nothing saved. The weights in memory are tested and
    # nothing is written (no checkpoint, detectors or metrics.json), so the folder holds no result.
    dry_run = bool(cfg.trainer.get("fast_dev_run"))
    qc_dir = None if dry_run else out
    datamodule = build_datamodule(cfg)
    model = build_classifier(
        cfg, build_backbone(cfg, ident["arch"]), datamodule.test_set_names, datamodule.class_names
    )
    if start is not None:  # before a logger starts: weights of another model fail in one line
        start.check_fits(model, ident["arch"], cfg.arch._target_)
    logger = experiment_logger(cfg, ident, folder.wandb_id) if lead else None
    trainer = instantiate(
        cfg.trainer,
        logger=logger if logger is not None else False,
        callbacks=[*configured, *quality_control(cfg, qc_dir, references), *(callbacks or [])],
        default_root_dir=str(out),
    )
    resume = start.fit_from(model, folder.resume_from) if start else folder.resume_from
    try:
        t0 = time.perf_counter()
        datamodule.prepare_data()
        t_data = time.perf_counter()
        if resume:
            log.info("resuming %s from %s", out, resume)
        with ddp_launch_scope(out):
            trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
        if trainer.interrupted:
            raise Interrupted(f"training of {out} was interrupted; run the same command again to resume")
        leave_process_group()
        if not lead:
            return {}
        t_fit = time.perf_counter()
        tester = evaluation_trainer(trainer, cfg, quality_control(cfg, qc_dir, references))
        if dry_run:
            log.info("trainer.fast_dev_run: one batch of each stage ran; nothing was saved")
            return tidy({**test_metrics(tester, model, datamodule), **identity})
        evaluated = checkpoint_file(out, cfg.eval.checkpoint)
        metrics = test_metrics(tester, model, datamodule, str(evaluated))
        t_test = time.perf_counter()
        loaded = model.loaded_checkpoint
        metrics.update(
            {
                **identity,
                # From the newest checkpoint: under ddp_spawn this process's trainer never ran an epoch.
                "epochs": checkpoint_epoch(checkpoint_file(out, "last")) + 1,
                "torch_threads": torch.get_num_threads(),
                "precision": cfg.trainer.precision,
                "deterministic": cfg.trainer.deterministic,
                "accelerator": tester.strategy.root_device.type,
                "devices": trainer.world_size,
                "time/data_s": t_data - t0,
                "time/fit_s": t_fit - t_data,
                "time/test_s": t_test - t_fit,
                "memory/peak_mib": peak_memory_mib(),  # this job's peak resident memory, whole process
                "memory/gpu_peak_mib": gpu_peak_memory_mib(tester.strategy.root_device),
                "checkpoint": str(evaluated.relative_to(out)),
                "eval/checkpoint": cfg.eval.checkpoint,
                "eval/epoch": loaded["epoch"],
                "eval/step": loaded["step"],
                **{k: v for k, v in loaded.items() if k.startswith("val/")},
                "wandb/run_id": folder.wandb_id if logger is not None and uses_wandb else None,
            }
        )
        metrics = tidy({**metrics, "fingerprint": folder.fingerprint})
        numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
        if isinstance(logger, WandbLogger):  # the headline as summary values, then curves and two tables
            log_catalog(logger.experiment, metrics, datamodule, model)
        elif logger is not None:
            logger.log_metrics(numbers)
        finished = folder.finish(metrics)
        if isinstance(logger, WandbLogger):  # metrics.json (and the checkpoint) once written: artifacts
            log_result_artifacts(logger.experiment, cfg.logger, out, evaluated, cfg.eval.checkpoint)
        return finished
    finally:
        finish_wandb()


# Config groups whose chosen option W&B can group and filter runs by (beside arch, aug, cell and seed).
LOGGED_CHOICES = ("data", "trainer", "scheduler", "callbacks", "experiment", "debug")


def experiment_logger(cfg: DictConfig, ident: dict, wandb_id: str | None):
    """The configured logger, its run named and grouped by the run's identity (W&B: continuing `wandb_id`)."""
    cell = f"{ident['arch']}-{ident['aug']}"
    chosen = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    groups = {g: chosen.get(g) for g in LOGGED_CHOICES}
    tags = [
        f"arch:{ident['arch']}",
        f"aug:{ident['aug']}",
        *(["smoke"] if groups["debug"] == "smoke" else []),
    ]
    return build_logger(
        cfg,
        f"{cell}-s{ident['seed']}",
        ident["group"],
        tags,
        run_id=wandb_id,
        choices={"arch": ident["arch"], "aug": ident["aug"], "cell": cell, "seed": ident["seed"], **groups},
    )


def debug_choice() -> str | None:
    return HydraConfig.get().runtime.choices.get("debug") if HydraConfig.initialized() else None


def resolve_hardware_choices(cfg: DictConfig) -> None:
    """`auto` precision and determinism, resolved for the hardware `trainer.accelerator` lands on."""
    trainer = cfg.trainer
    precision, why = choose_precision(trainer.precision, trainer.accelerator)
    deterministic, why_det = choose_deterministic(trainer.deterministic, trainer.accelerator)
    with open_dict(cfg):
        trainer.precision, trainer.deterministic = precision, deterministic
    log.info("precision %s: %s; deterministic %s: %s", precision, why, deterministic, why_det)
    if trainer.accelerator == "auto" and os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        log.warning(
            "CUDA_VISIBLE_DEVICES is empty: no GPU is visible to this job, so it trains on the CPU "
            "(submitit_local hides the GPUs unless hydra.launcher.gpus_per_node is set; "
            "hydra/launcher=local_gpu sets it)"
        )


def _summary(metrics: dict, out: Path) -> str:
    lines = [f"{metrics['arch']} / aug={metrics['aug']} / seed={metrics['seed']}"]
    for key in ("test/iid/acc", "test/position/s5/acc", "test/ood/acc", "test/mix/acc", "test/consistency"):
        if key in metrics:
            lines.append(f"  {key:<24} {metrics[key]:.4f}")
    if (out / METRICS_FILE).is_file():
        lines.append(f"  results: {out / METRICS_FILE}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    out = Path(cfg.output_dir)
    # In a multirun a failed job is re-raised: Hydra marks it failed and runs the others.
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    with command_errors(run_dir=out, reraise=multirun):
        metrics = train(cfg)
    if not metrics:  # a DDP rank other than 0: it trained; rank 0 evaluates and reports
        return None
    log.info("\n%s", _summary(metrics, out))
    with command_errors(reraise=multirun):  # the run itself finished: no error.txt for it
        return objective(metrics, cfg.optimized_metric)


def objective(metrics: dict, key: str) -> float:
    """The value a Hydra sweeper optimizes. A validation metric by default (`val/loss` of the evaluated
    weights): choosing hyperparameters on the o.o.d. test catalog would make it part of training."""
    if key not in metrics:
        close = difflib.get_close_matches(key, list(metrics), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"optimized_metric={key} is not a key of metrics.json{hint}")
    return metrics[key]


if __name__ == "__main__":
    check_command_line(sys.argv[1:])
    main()
