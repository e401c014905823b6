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

import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from shapeshift.config import ConfigError, misspelled, validate
from shapeshift.distributed import ddp_launch_scope, evaluation_trainer, is_lead, leave_process_group
from shapeshift.loggers import build_logger, finish_wandb, route_lightning_logs, silence_known_noise
from shapeshift.pipeline import (
    build_backbone,
    build_classifier,
    build_datamodule,
    quality_control,
    test_metrics,
)
from shapeshift.run_dir import (
    CHECKPOINT_DIR,
    ERROR_FILE,
    METRICS_FILE,
    RECORD_FILE,
    RunMismatch,
    arch_name,
    aug_label,
    check_reuse,
    checkpoint_file,
    digest,
    fingerprint_keys,
    is_finished,
    new_record,
    read_metrics,
    record_failure,
    tidy,
    write_json,
    write_metrics,
)
from shapeshift.runtime import (
    checkpoint_epoch,
    choose_deterministic,
    choose_precision,
    fast_cpu_math,
    gpu_peak_memory_mib,
    peak_memory_mib,
    release_memory,
    reset_peak_memory,
)
from shapeshift.wandb_catalog import log_catalog

log = logging.getLogger("shapeshift")
fast_cpu_math()  # before torch starts its thread pool (see runtime.py: denormals slow CPU backward 3-5x)


class Interrupted(RuntimeError):
    """Training stopped before the end (Ctrl-C, a signal): nothing is presented as a result."""


def run_identity(cfg: DictConfig) -> dict:
    """Arch and aug as the user chose them (the config group option names), and the sweep they belong to."""
    choices, group = None, None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = hc.runtime.choices
        if hc.mode == RunMode.MULTIRUN:
            sweep = Path(hc.sweep.dir)
            group = f"{sweep.parent.name}_{sweep.name}"
    return {"arch": arch_name(choices, cfg.arch._target_), "aug": aug_label(cfg.aug.name, cfg.aug.magnitude),
            "seed": int(cfg.seed), "group": group}


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
    out = Path(cfg.output_dir)
    ident = run_identity(cfg)
    resolve_hardware_choices(cfg)  # before fingerprinting: a run is tied to what it computed
    keys = fingerprint_keys(cfg, debug_choice())
    record = None if cfg.force else check_reuse(out, keys)  # RunMismatch: another config's run is never reused
    if record is not None and is_finished(out):
        log.info("%s is finished (metrics.json exists, same config): skipped; force=true reruns it", out)
        return read_metrics(out)
    ckpt_dir = out / CHECKPOINT_DIR
    lead = is_lead()  # under DDP every rank runs this; only rank 0 touches the folder, logs and evaluates
    uses_wandb = str(OmegaConf.select(cfg, "logger._target_", default="")).endswith("WandbLogger")
    wandb_id = None
    if lead:
        if cfg.force:
            (out / METRICS_FILE).unlink(missing_ok=True)
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / ERROR_FILE).unlink(missing_ok=True)
        # A resumed run continues its W&B run; a new one gets a fresh id, kept in the folder for a later resume.
        wandb_id = (record or {}).get("wandb_id") or (uuid.uuid4().hex[:8] if uses_wandb else None)
        write_json(out / RECORD_FILE, new_record(out, keys, {k: ident[k] for k in ("arch", "aug", "seed")}, wandb_id))
    if threads := torch_threads(cfg):
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    backbone = build_backbone(cfg, ident["arch"])
    datamodule = build_datamodule(cfg)
    model = build_classifier(cfg, backbone, datamodule.test_set_names)
    run_name = f"{ident['arch']}-{ident['aug']}-s{ident['seed']}"
    logger = build_logger(cfg, run_name, ident["group"], [f"arch:{ident['arch']}", f"aug:{ident['aug']}"],
                          run_id=wandb_id, choices={"arch": ident["arch"], "aug": ident["aug"],
                                                    "cell": f"{ident['arch']}-{ident['aug']}", "seed": ident["seed"]}
                          ) if lead else None
    trainer = instantiate(cfg.trainer, logger=logger if logger is not None else False,
                          callbacks=[*checkpoint_callbacks(ckpt_dir, cfg.eval.checkpoint), *quality_control(cfg, out),
                                     *configured_callbacks(cfg), *(callbacks or [])],
                          default_root_dir=str(out))
    resume = checkpoint_file(out, "last")
    try:
        t0 = time.perf_counter()
        datamodule.prepare_data()
        t_data = time.perf_counter()
        if resume.is_file():
            log.info("resuming %s from %s", out, resume)
        with ddp_launch_scope(out):
            trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume) if resume.is_file() else None)
        if trainer.interrupted:
            raise Interrupted(f"training of {out} was interrupted; run the same command again to resume")
        leave_process_group()
        if not lead:
            return {}
        t_fit = time.perf_counter()
        evaluated = checkpoint_file(out, cfg.eval.checkpoint)
        tester = evaluation_trainer(trainer, cfg, quality_control(cfg, out))
        metrics = test_metrics(tester, model, datamodule, str(evaluated))
        t_test = time.perf_counter()
        loaded = model.loaded_checkpoint
        metrics.update({
            "arch": ident["arch"], "aug": ident["aug"], "seed": ident["seed"],
            # From the newest checkpoint: under ddp_spawn this process's trainer never ran an epoch.
            "epochs": checkpoint_epoch(resume) + 1, "torch_threads": torch.get_num_threads(),
            "precision": cfg.trainer.precision, "deterministic": cfg.trainer.deterministic,
            "accelerator": tester.strategy.root_device.type, "devices": trainer.world_size,
            "time/data_s": t_data - t0, "time/fit_s": t_fit - t_data, "time/test_s": t_test - t_fit,
            "memory/peak_mib": peak_memory_mib(),  # this job's peak resident memory, whole process
            "memory/gpu_peak_mib": gpu_peak_memory_mib(tester.strategy.root_device),
            "checkpoint": str(evaluated.relative_to(out)), "eval/checkpoint": cfg.eval.checkpoint,
            "eval/epoch": loaded["epoch"], "eval/step": loaded["step"],
            **{k: v for k, v in loaded.items() if k.startswith("val/")},
            "fingerprint": digest(keys), "wandb/run_id": wandb_id if logger is not None and uses_wandb else None,
        })
        metrics = tidy(metrics)
        numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
        if isinstance(logger, WandbLogger):  # the result once, as summary values, not a one-point history
            logger.experiment.summary.update(numbers)
            log_catalog(logger.experiment, metrics, datamodule, model)
        elif logger is not None:
            logger.log_metrics(numbers)
        write_metrics(out, metrics)  # last: its presence marks the run finished
    finally:
        finish_wandb()
    return metrics


def checkpoint_callbacks(ckpt_dir: Path, evaluated: str) -> list[ModelCheckpoint]:
    """`last.ckpt` after every epoch (resume, and the default evaluation); `best.ckpt` only when evaluated.

    `best` monitors val/loss, not val/acc: accuracy saturates at 1.000 in the first epoch on this task, and
    a tie keeps the earlier checkpoint, so "best accuracy" would mean "first epoch". Ties in val/loss keep
    the earlier epoch too (Lightning compares strictly), which is deterministic.
    """
    # monitor=None with save_top_k=1: saved after every epoch, the previous one replaced.
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", enable_version_counter=False)
    if evaluated != "best":
        return [last]
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/loss", mode="min", save_top_k=1,
                           save_weights_only=True, enable_version_counter=False)
    return [last, best]


def configured_callbacks(cfg: DictConfig) -> list[Callback]:
    """The callbacks chosen in the `callbacks` group (early stopping, LR monitor, rich progress, ...)."""
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node and "_target_" in node]


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
        log.warning("CUDA_VISIBLE_DEVICES is empty: no GPU is visible to this job, so it trains on the CPU "
                    "(submitit_local hides the GPUs unless hydra.launcher.gpus_per_node is set; "
                    "hydra/launcher=local_gpu sets it)")


def _summary(metrics: dict, out: Path) -> str:
    lines = [f"{metrics['arch']} / aug={metrics['aug']} / seed={metrics['seed']}"]
    for key in ("test/iid/acc", "test/position/s5/acc", "test/ood/acc", "test/mix/acc", "test/consistency"):
        if key in metrics:
            lines.append(f"  {key:<24} {metrics[key]:.4f}")
    lines.append(f"  results: {out / METRICS_FILE}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    out = Path(cfg.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        metrics = train(cfg)
    except RunMismatch as err:  # the folder is another run's: leave it exactly as it was
        print(f"shapeshift: {err}", file=sys.stderr)
        if multirun:
            raise
        sys.exit(2)
    except (ConfigError, Interrupted) as err:
        record_failure(out, err)
        print(f"shapeshift: {'config error: ' if isinstance(err, ConfigError) else ''}{err}", file=sys.stderr)
        if multirun:
            raise  # Hydra marks this job failed and runs the others
        sys.exit(2 if isinstance(err, ConfigError) else 130)
    except Exception as err:
        record_failure(out, err)
        log.error("job failed: %s: %s (traceback in %s)", type(err).__name__, err, out / ERROR_FILE)
        raise
    if not metrics:  # a DDP rank other than 0: it trained; rank 0 evaluates and reports
        return None
    log.info("\n%s", _summary(metrics, out))
    return metrics.get("test/ood/acc", metrics["test/iid/acc"])


def check_output_dir(argv: list[str]) -> None:
    """Fail in one line, before Hydra's traceback, when the run or sweep dir cannot be created."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]  # Hydra's quoting, needed for folder names with commas (sweep job dirs)
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value and "${" not in value:
            break
    else:
        key, value = "output folder", "outputs"
    try:
        Path(value).expanduser().mkdir(parents=True, exist_ok=True)
        probe = Path(value).expanduser() / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        print(f"shapeshift: cannot write to {key} {value!r}: {err.strerror or err}", file=sys.stderr)
        sys.exit(2)


def check_keys(argv: list[str]) -> None:
    """Fail in one line with a "did you mean" when a command-line key is not in the config."""
    conf = Path(__file__).resolve().parents[1] / "conf"
    problem = misspelled(argv, {p.name for p in conf.iterdir() if p.is_dir()})
    if problem:
        print(f"shapeshift: {problem}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    check_keys(sys.argv[1:])
    check_output_dir(sys.argv[1:])
    main()
