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
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, open_dict

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
from shapeshift.runs.folder import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    RISK_COVERAGE_FILE,
    arch_name,
    aug_label,
    checkpoint_file,
)
from shapeshift.runs.lifecycle import Interrupted, RunFolder, failures_recorded
from shapeshift.runs.metric_keys import CONSISTENCY_KEY, IID, MIX, OOD, SHORTCUT_KEY, test_key, tidy
from shapeshift.runs.provenance import COMMIT_KEY, PRECISION_KEY, code_commit
from shapeshift.tracking.loggers import (
    build_logger,
    finish_wandb,
    is_wandb,
    route_lightning_logs,
    silence_known_noise,
)
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


@dataclass
class Plan:
    """What a run is, checked before its folder is claimed: a bad reference, checkpoint or callback fails
    in one line and writes nothing."""

    ident: dict  # arch, aug, seed and the sweep's group
    lead: bool  # under DDP every rank runs train(); only rank 0 writes the folder, logs and evaluates
    dry_run: bool  # trainer.fast_dev_run: one batch per stage, nothing saved
    uses_wandb: bool
    references: list  # (run dir, classifier) pairs for the quality control
    checkpointing: list  # the configured callbacks (checked: last.ckpt will exist)
    start: StartFrom | None  # ckpt_path: the checkpoint this run starts from
    keys: dict  # what the run's fingerprint is made of

    @property
    def identity(self) -> dict:
        return {k: self.ident[k] for k in ("arch", "aug", "seed")}


def train(cfg: DictConfig, callbacks: list[Callback] | None = None) -> dict:
    """Fit, test the chosen checkpoint on every evaluation set, write `metrics.json`, return the metrics.

    The run folder's part goes around the experiment (lightning-hydra-template's `task_wrapper`): claim it,
    record a failure in it, close W&B whatever happens; `experiment` builds, fits, tests and finishes."""
    prepare_process()
    out, lead = Path(cfg.output_dir), is_lead()
    with failures_recorded(out, lead, user_errors=(ConfigError,)):
        plan = plan_run(cfg, out, lead)
        if plan.dry_run:  # nothing is read from or written to the folder: no claim, no record
            folder = RunFolder(out, fingerprint="")
        else:
            folder = RunFolder.claim(
                out, plan.keys, plan.identity, force=cfg.force, wandb=plan.uses_wandb, lead=lead
            )
        if folder.finished is not None:
            return folder.finished
        try:
            return experiment(cfg, plan, folder, callbacks or [])
        finally:
            finish_wandb()


def prepare_process() -> None:
    release_memory()  # what earlier jobs of this multirun left behind
    reset_peak_memory()  # from here on, this job's own peak
    silence_known_noise()
    route_lightning_logs()


def plan_run(cfg: DictConfig, out: Path, lead: bool) -> Plan:
    validate(cfg)
    resolve_hardware_choices(cfg)  # before fingerprinting: a run is tied to what it computed
    return Plan(
        ident=run_identity(cfg),
        lead=lead,
        dry_run=bool(cfg.trainer.get("fast_dev_run")),
        uses_wandb=is_wandb(cfg.get("logger")),
        references=qc_references(cfg, cfg.qc.reference, out) if lead else [],
        checkpointing=run_callbacks(cfg, out / CHECKPOINT_DIR),
        start=StartFrom.open(cfg),  # checked before the fingerprint hashes its path (None without one)
        keys=fingerprint_keys(cfg, debug_choice()),
    )


def experiment(cfg: DictConfig, plan: Plan, folder: RunFolder, callbacks: list[Callback]) -> dict:
    """Build, fit, test the evaluated checkpoint; on the lead process, log and finish the folder."""
    if threads := torch_threads(cfg):
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out, ident = folder.path, plan.ident
    datamodule = build_datamodule(cfg)
    model = build_classifier(
        cfg, build_backbone(cfg, ident["arch"]), datamodule.test_set_names, datamodule.class_names
    )
    if plan.start is not None:  # before a logger starts: weights of another model fail in one line
        plan.start.check_fits(model, ident["arch"], cfg.arch._target_)
    logger = experiment_logger(cfg, ident, folder.wandb_id) if plan.lead and not plan.dry_run else None
    # Built once: the Trainer that tests (the fit's, or a one-device one after DDP) gets this same copy.
    # A dry run reuses no saved detectors: it reads nothing from the folder.
    qc = quality_control(cfg, None if plan.dry_run else out, plan.references)
    trainer = instantiate(
        cfg.trainer,
        logger=logger if logger is not None else False,
        callbacks=[*plan.checkpointing, *qc, *callbacks],
        default_root_dir=str(out),
    )
    resume = None if plan.dry_run else folder.resume_from
    if plan.start is not None:
        resume = plan.start.fit_from(model, resume)
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
    if not plan.lead:
        return {}
    t_fit = time.perf_counter()
    tester = evaluation_trainer(trainer, cfg, list(qc))  # a copy: Lightning adds its own callbacks to it
    if plan.dry_run:  # the weights in memory are tested; no checkpoint exists to load
        log.info("trainer.fast_dev_run: one batch of each stage ran; nothing was saved")
        return tidy({**test_metrics(tester, model, datamodule), **plan.identity})
    evaluated = checkpoint_file(out, cfg.eval.checkpoint)
    metrics = test_metrics(tester, model, datamodule, str(evaluated))
    times = {
        "time/data_s": t_data - t0,
        "time/fit_s": t_fit - t_data,
        "time/test_s": time.perf_counter() - t_fit,
    }
    metrics = tidy(
        {
            **metrics,
            **plan.identity,
            **run_facts(cfg, trainer, tester, model, evaluated, out),
            **datamodule.data_metrics(),
            **times,
            "wandb/run_id": folder.wandb_id if logger is not None and plan.uses_wandb else None,
            "fingerprint": folder.fingerprint,
        }
    )
    if isinstance(logger, WandbLogger):  # the headline as summary values, then curves and two tables
        log_catalog(logger.experiment, metrics, datamodule, model)
    elif logger is not None:
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    files = {RISK_COVERAGE_FILE: model.test_run.qc_curves} if model.test_run.qc_curves else {}
    for callback in qc:
        files.update(callback.files_to_save())
    finished = folder.finish(metrics, files)
    if isinstance(logger, WandbLogger):  # metrics.json (and the checkpoint) once written: artifacts
        log_result_artifacts(logger.experiment, cfg.logger, out, evaluated, cfg.eval.checkpoint)
    return finished


def run_facts(cfg: DictConfig, trainer, tester, model, evaluated: Path, out: Path) -> dict:
    """What the run ran on and which weights its test measured, beside the test's metrics."""
    loaded = model.loaded_checkpoint
    return {
        # From the newest checkpoint: under ddp_spawn this process's trainer never ran an epoch.
        "epochs": checkpoint_epoch(checkpoint_file(out, "last")) + 1,
        "torch_threads": torch.get_num_threads(),
        PRECISION_KEY: cfg.trainer.precision,
        COMMIT_KEY: code_commit(),  # the code that computed these numbers
        "deterministic": cfg.trainer.deterministic,
        "accelerator": tester.strategy.root_device.type,
        "devices": trainer.world_size,
        "memory/peak_mib": peak_memory_mib(),  # this job's peak resident memory, whole process
        "memory/gpu_peak_mib": gpu_peak_memory_mib(tester.strategy.root_device),
        "checkpoint": str(evaluated.relative_to(out)),
        "eval/checkpoint": cfg.eval.checkpoint,
        "eval/epoch": loaded["epoch"],
        "eval/step": loaded["step"],
        **{k: v for k, v in loaded.items() if k.startswith("val/")},
    }


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
    headline = [test_key(IID, "acc"), SHORTCUT_KEY, test_key(OOD, "acc"), test_key(MIX, "acc")]
    for key in (*headline, CONSISTENCY_KEY):
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
    with command_errors(reraise=multirun):  # train() records a failure in the run's error.txt
        metrics = train(cfg)
    if not metrics:  # a DDP rank other than 0: it trained; rank 0 evaluates and reports
        return None
    log.info("\n%s", _summary(metrics, out))
    if cfg.trainer.get("fast_dev_run"):  # a dry run's metrics describe one batch: nothing to optimize
        return None
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
