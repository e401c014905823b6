"""A trained run, loaded back: its own saved config, and its classifier with the evaluated weights.

Used by the commands that work on finished runs (`evaluate`, `audit`); a run is always rebuilt from its
own `.hydra/config.yaml`, never from today's defaults.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from shapeshift.config.errors import ConfigError
from shapeshift.config.schema import TrainConfig
from shapeshift.engine.pipeline import build_backbone, build_classifier
from shapeshift.engine.runtime import AUTO, choose_precision
from shapeshift.models.classifier import Classifier
from shapeshift.runs.folder import (
    CONFIG_FILE,
    checkpoint_file,
    is_finished,
    read_metrics,
    read_record,
    read_run,
)


class RunError(ConfigError):
    """A run that cannot be loaded: no config, no checkpoint, a corrupt checkpoint."""


def load_run_config(run_dir: Path) -> DictConfig:
    """The run's saved config over today's schema defaults (a run older than a new key still loads)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run_dir} has no saved config ({CONFIG_FILE})")
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path))
    # `auto` was resolved by train() and recorded in run.json's fingerprint keys: the run is rebuilt with
    # what it computed in, not with what this machine would choose (only a run older than the record is).
    recorded = (read_record(run_dir) or {}).get("keys", {})
    with open_dict(cfg):
        cfg.output_dir = str(run_dir)  # saved as ${hydra:runtime.output_dir}, which only Hydra resolves
        if cfg.trainer.precision == AUTO:
            cfg.trainer.precision = (
                recorded.get("trainer.precision") or choose_precision(AUTO, cfg.trainer.accelerator)[0]
            )
    return cfg


def checkpoint_path(run_dir: Path, cfg: DictConfig) -> Path:
    """The weights the run's metrics describe; for an unfinished run, those its config would evaluate."""
    saved = read_metrics(run_dir).get("checkpoint") if is_finished(run_dir) else None
    return run_dir / saved if saved else checkpoint_file(run_dir, cfg.eval.checkpoint)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means the file cannot be trusted
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise RunError(f"checkpoint {path} is unreadable ({type(err).__name__}: {first})") from err


def load_model(
    run_dir: Path, cfg: DictConfig, test_set_names: list[str], path: Path | None = None
) -> Classifier:
    """The run's classifier with the weights of `path` (default: `checkpoint_path`), in eval mode."""
    model = build_classifier(cfg, build_backbone(cfg, read_run(run_dir).arch or "?"), test_set_names)
    checkpoint = load_checkpoint(path or checkpoint_path(run_dir, cfg))
    model.load_state_dict(checkpoint["state_dict"])
    model.on_load_checkpoint(checkpoint)  # records which epoch and step these weights are
    return model.eval()
