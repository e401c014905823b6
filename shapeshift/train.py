"""Train one architecture with one augmentation, evaluate it on i.i.d. and o.o.d. sets, write metrics.json.

    python -m shapeshift.train                                       # default experiment
    python -m shapeshift.train -m arch=cnn,gap,resnet18,resnet18_aa aug=none,basic

A run directory whose `metrics.json` exists is finished: running the same command into it again skips
the job (`force=true` reruns it). A run with a `checkpoints/last.ckpt` but no `metrics.json` was
interrupted: it resumes from that checkpoint and ends with the metrics an uninterrupted run would give.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from shapeshift.config import ConfigError, register_schemas, validate
from shapeshift.loggers import build_logger, finish_wandb, silence_known_noise
from shapeshift.pipeline import build_backbone, build_classifier, build_datamodule, test_metrics
from shapeshift.results import METRICS_FILE, aug_label, read_metrics, tidy, write_metrics
from shapeshift.runtime import fast_cpu_math
from shapeshift.wandb_catalog import log_catalog

log = logging.getLogger("shapeshift")
register_schemas()
fast_cpu_math()
ERROR_FILE = "error.txt"


class Interrupted(RuntimeError):
    """Training stopped before the end (Ctrl-C, a signal): nothing is presented as a result."""


def run_identity(cfg: DictConfig) -> dict:
    """Arch and aug as the user chose them (the config group option names), and the sweep they belong to."""
    arch = cfg.arch._target_.rsplit(".", 1)[-1].lower()
    group = None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        arch = hc.runtime.choices.get("arch") or arch
        if hc.mode == RunMode.MULTIRUN:
            sweep = Path(hc.sweep.dir)
            group = f"{sweep.parent.name}_{sweep.name}"
    return {"arch": arch, "aug": aug_label(cfg.aug.name, cfg.aug.magnitude), "seed": int(cfg.seed), "group": group}


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
    """Fit, test the best checkpoint on every evaluation set, write `metrics.json`, return the metrics."""
    silence_known_noise()
    validate(cfg)
    out = Path(cfg.output_dir)
    if (out / METRICS_FILE).is_file() and not cfg.force:
        log.info("%s is finished (metrics.json exists): skipped; force=true reruns it", out)
        return read_metrics(out)
    ident = run_identity(cfg)
    ckpt_dir = out / "checkpoints"
    if cfg.force:
        (out / METRICS_FILE).unlink(missing_ok=True)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / ERROR_FILE).unlink(missing_ok=True)
    if threads := torch_threads(cfg):
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    backbone = build_backbone(cfg, ident["arch"])
    datamodule = build_datamodule(cfg)
    model = build_classifier(cfg, backbone, datamodule.test_set_names)
    run_name = f"{ident['arch']}-{ident['aug']}-s{ident['seed']}"
    logger = build_logger(cfg, run_name, ident["group"], [f"arch:{ident['arch']}", f"aug:{ident['aug']}"])
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/acc", mode="max", save_last=True)
    trainer = instantiate(cfg.trainer, logger=logger if logger is not None else False,
                          callbacks=[checkpoint, *(callbacks or [])], default_root_dir=str(out))
    resume = ckpt_dir / "last.ckpt"
    try:
        t0 = time.perf_counter()
        datamodule.prepare_data()
        t_data = time.perf_counter()
        if resume.is_file():
            log.info("resuming %s from %s", out, resume)
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume) if resume.is_file() else None)
        if trainer.interrupted:
            raise Interrupted(f"training of {out} was interrupted; run the same command again to resume")
        t_fit = time.perf_counter()
        metrics = test_metrics(evaluation_trainer(trainer, cfg), model, datamodule,
                               checkpoint.best_model_path or None)
        t_test = time.perf_counter()
        if checkpoint.best_model_score is not None:
            metrics["val/acc"] = float(checkpoint.best_model_score)
        saved = checkpoint.best_model_path or checkpoint.last_model_path
        metrics.update({
            "arch": ident["arch"], "aug": ident["aug"], "seed": ident["seed"],
            "epochs": int(trainer.current_epoch), "torch_threads": torch.get_num_threads(),
            "time/data_s": t_data - t0, "time/fit_s": t_fit - t_data, "time/test_s": t_test - t_fit,
            "checkpoint": str(Path(saved).relative_to(out)) if saved else None,
        })
        metrics = tidy(metrics)
        if logger is not None:
            logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
        if isinstance(logger, WandbLogger):
            log_catalog(logger.experiment, metrics, datamodule, model)
        write_metrics(out, metrics)  # last: its presence marks the run finished
    finally:
        finish_wandb()
    return metrics


def evaluation_trainer(trainer: L.Trainer, cfg: DictConfig) -> L.Trainer:
    """Test on one device: a distributed sampler would pad and split the evaluation sets."""
    if trainer.world_size == 1:
        return trainer
    return L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, logger=False, enable_checkpointing=False,
                     default_root_dir=trainer.default_root_dir)


def _summary(metrics: dict, out: Path) -> str:
    lines = [f"{metrics['arch']} / aug={metrics['aug']} / seed={metrics['seed']}"]
    for key in ("test/iid/acc", "test/position/s5/acc", "test/ood/acc", "test/mix/acc", "test/consistency"):
        if key in metrics:
            lines.append(f"  {key:<24} {metrics[key]:.4f}")
    lines.append(f"  results: {out / METRICS_FILE}")
    return "\n".join(lines)


def record_failure(out: Path, err: BaseException) -> None:
    """The failed job's error in its own run dir, so a sweep report can say why it has no results."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        (out / ERROR_FILE).write_text(f"{type(err).__name__}: {err}\n\n{text}")
    except OSError:
        pass


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    out = Path(cfg.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        metrics = train(cfg)
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
    log.info("\n%s", _summary(metrics, out))
    return metrics.get("test/ood/acc", metrics["test/iid/acc"])


def check_output_dir(argv: list[str]) -> None:
    """Fail in one line, before Hydra's traceback, when the run or sweep dir cannot be created."""
    for arg in argv:
        key, _, value = arg.partition("=")
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


if __name__ == "__main__":
    check_output_dir(sys.argv[1:])
    main()
