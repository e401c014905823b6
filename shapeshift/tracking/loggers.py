"""Experiment loggers: W&B offline unless the user logged in, CSV, or none; and quiet third-party noise."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def silence_known_noise() -> None:
    """Hide warnings every run prints that say nothing about the user's run."""
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*litlogger.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    # Resumed from another run's file (ckpt_path): its checkpoint bookkeeping rightly stays with that run.
    warnings.filterwarnings("ignore", message=r".*The dirpath has changed from .* won't be reloaded.*")
    # A saved checkpoint tested on a Trainer made for testing (rank 0 after DDP) needs no ModelCheckpoint.
    warnings.filterwarnings(
        "ignore", message=r".*Be aware that when using `ckpt_path`, callbacks used to create.*"
    )
    # Lightning's "tip" lines (litlogger, LitServe) are logged at INFO by its rank-zero logger.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage() and "💡 Tip" not in record.getMessage()
    )


def route_lightning_logs() -> None:
    """Send Lightning's log lines ("Restoring states ...") through the root logger, so they reach the
    run's train.log as well as the terminal. Imported before Hydra set up logging, Lightning gave its
    loggers a console handler of their own and stopped them from propagating."""
    if not logging.getLogger().handlers:
        return  # nothing configured the root logger: keep Lightning's own console output
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        own = logging.getLogger(name)
        for handler in [h for h in own.handlers if type(h) is logging.StreamHandler]:
            own.removeHandler(handler)
        own.propagate = True


def is_wandb(logger: DictConfig | dict | None) -> bool:
    """Whether a logger config (`cfg.logger`, a callback's copy of it) makes a W&B logger."""
    return bool(logger) and str(logger.get("_target_", "")).endswith("WandbLogger")


def wandb_logged_in() -> bool:
    """True if W&B has credentials; checked without importing wandb or opening a connection."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def wandb_mode() -> str:
    """WANDB_MODE if the user set it, otherwise online only when logged in: never prompt, never hang."""
    return os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")


# Keys of the logger config that are ours, not the logger class's: what W&B gets as artifacts
# (shapeshift/tracking/wandb_results.py). Taken out before the logger is instantiated.
OWN_KEYS = ("artifacts", "log_checkpoint")


def logger_params(logger: DictConfig) -> dict:
    """The logger config, resolved, without OWN_KEYS: the arguments of its `_target_`."""
    params = OmegaConf.to_container(logger, resolve=True)
    return {k: v for k, v in params.items() if k not in OWN_KEYS}


def build_logger(
    cfg: DictConfig,
    run_name: str,
    group: str | None,
    tags: list[str],
    run_id: str | None = None,
    choices: dict | None = None,
):
    """Instantiate `cfg.logger`; an empty logger config means no logger. `run_id`: the W&B run to continue;
    `choices`: the config group options (arch, aug, cell), top-level keys W&B can group runs by."""
    if not cfg.logger or not cfg.logger.get("_target_"):
        return None
    config = {"choices": choices or {}, **OmegaConf.to_container(cfg, resolve=True)}
    if not is_wandb(cfg.logger):
        logger = instantiate(logger_params(cfg.logger))
        logger.log_hyperparams(config)
        return logger
    import wandb

    # The run is started here, through wandb's public API, and handed to Lightning: job type, config and
    # resume are ours to set, and Lightning's deprecated `anonymous` argument never reaches wandb.
    os.makedirs(cfg.logger.save_dir, exist_ok=True)
    run = wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.get("entity"),
        dir=cfg.logger.save_dir,
        name=run_name,
        group=group,
        tags=tags,
        id=run_id,
        resume="allow",
        job_type="train",
        mode=cfg.logger.get("mode") or wandb_mode(),
        config=config,
        # W&B's banner and closing summary stay off the terminal unless asked for (WANDB_SILENT=false)
        settings=wandb.Settings(silent=os.environ.get("WANDB_SILENT", "true").lower() != "false"),
    )
    # Lightning sets the x-axis only on runs it starts itself: without this, train and validation curves
    # plot against W&B's own `_step` (one per log call), not the optimizer step. Named globs, not "*", so
    # the severity curves keep their own axis (shapeshift/tracking/wandb_catalog.py).
    run.define_metric("trainer/global_step")
    for pattern in ("train/*", "val/*", "lr-*", "epoch"):
        run.define_metric(pattern, step_metric="trainer/global_step", step_sync=True)
    return instantiate(logger_params(cfg.logger), experiment=run)


def finish_wandb() -> None:
    """Close the W&B run so the next job of a multirun starts its own (else it logs into this one)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
