"""Train one architecture with one augmentation, evaluate it on i.i.d. and o.o.d. sets, write metrics.json.

    python -m shapeshift.train                                       # default experiment
    python -m shapeshift.train -m arch=cnn,gap,resnet18,resnet18_aa aug=none,basic
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from shapeshift.config import ConfigError, register_schemas, validate
from shapeshift.loggers import build_logger, finish_wandb, silence_known_noise
from shapeshift.pipeline import build_backbone, build_classifier, build_datamodule, test_metrics
from shapeshift.results import tidy, write_metrics
from shapeshift.wandb_catalog import log_catalog

log = logging.getLogger("shapeshift")
register_schemas()


def run_identity(cfg: DictConfig) -> dict:
    """Arch and aug as the user chose them (the config group option names), and the sweep they belong to."""
    arch = cfg.arch._target_.rsplit(".", 1)[-1].lower()
    group = None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        arch = hc.runtime.choices.get("arch") or arch
        if hc.mode == RunMode.MULTIRUN:
            group = Path(hc.sweep.dir).name
    return {"arch": arch, "aug": cfg.aug.name, "seed": int(cfg.seed), "group": group}


def train(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint on every evaluation set, write `metrics.json`, return the metrics."""
    silence_known_noise()
    validate(cfg)
    ident = run_identity(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    backbone = build_backbone(cfg, ident["arch"])
    datamodule = build_datamodule(cfg)
    model = build_classifier(cfg, backbone, datamodule.test_set_names)
    run_name = f"{ident['arch']}-{ident['aug']}-s{ident['seed']}"
    logger = build_logger(cfg, run_name, ident["group"], [f"arch:{ident['arch']}", f"aug:{ident['aug']}"])
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/acc", mode="max",
                                 save_last=True)
    trainer = instantiate(cfg.trainer, logger=logger if logger is not None else False,
                          callbacks=[checkpoint], default_root_dir=str(out))
    try:
        t0 = time.perf_counter()
        datamodule.prepare_data()
        t_data = time.perf_counter()
        trainer.fit(model, datamodule=datamodule)
        t_fit = time.perf_counter()
        ckpt = "best" if checkpoint.best_model_path else None
        metrics = test_metrics(trainer, model, datamodule, ckpt)
        t_test = time.perf_counter()
        if checkpoint.best_model_score is not None:
            metrics["val/acc"] = float(checkpoint.best_model_score)
        metrics.update({
            "arch": ident["arch"], "aug": ident["aug"], "seed": ident["seed"],
            "epochs": int(trainer.current_epoch),
            "time/data_s": t_data - t0, "time/fit_s": t_fit - t_data, "time/test_s": t_test - t_fit,
            "checkpoint": str(Path(checkpoint.best_model_path or checkpoint.last_model_path).relative_to(out))
            if (checkpoint.best_model_path or checkpoint.last_model_path) else None,
        })
        metrics = tidy(metrics)
        if logger is not None:
            logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
        if isinstance(logger, WandbLogger):
            log_catalog(logger.experiment, metrics, datamodule, model)
        write_metrics(out, metrics)
    finally:
        finish_wandb()
    return metrics


def _summary(metrics: dict, out: Path) -> str:
    lines = [f"{metrics['arch']} / aug={metrics['aug']} / seed={metrics['seed']}"]
    for key in ("test/iid/acc", "test/position/s5/acc", "test/ood/acc", "test/mix/acc"):
        if key in metrics:
            lines.append(f"  {key:<24} {metrics[key]:.4f}")
    lines.append(f"  results: {out / 'metrics.json'}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        metrics = train(cfg)
    except ConfigError as err:
        print(f"shapeshift: config error: {err}", file=sys.stderr)
        sys.exit(2)
    log.info("\n%s", _summary(metrics, Path(cfg.output_dir)))
    return metrics.get("test/ood/acc", metrics["test/iid/acc"])


if __name__ == "__main__":
    main()
