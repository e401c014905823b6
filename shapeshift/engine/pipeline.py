"""The pieces `train`, `evaluate` and `audit` assemble from one config: backbone, data, classifier, test."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from shapeshift.config.errors import ConfigError
from shapeshift.data.augment import build_augmentation
from shapeshift.models.classifier import Classifier
from shapeshift.qc.callback import QualityControl
from shapeshift.runs.metric_keys import aggregate


def build_backbone(cfg: DictConfig, arch_name: str) -> torch.nn.Module:
    backbone = instantiate(cfg.arch)
    size = cfg.data.image_size
    need = getattr(backbone, "min_input_size", 1)
    if size < need:
        raise ConfigError(
            f"arch {arch_name!r} needs images of at least {need} px, got data.image_size={size}"
        )
    try:  # any other shape problem surfaces here, at start, not deep inside the first training step
        with torch.no_grad():
            backbone.eval()(torch.zeros(2, cfg.data.channels, size, size))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"arch {arch_name!r} cannot take {size} px images: {first}") from err
    return backbone.train()


def augmentation_transforms(cfg: DictConfig) -> list:
    """The aug preset's transform entries, resolved (a combined preset's `${concat:...}` included)."""
    return OmegaConf.to_container(cfg.aug, resolve=True)["transforms"]


def build_datamodule(cfg: DictConfig, augment: bool = True):
    transforms = augmentation_transforms(cfg) if augment and "aug" in cfg else []
    return instantiate(
        cfg.data,
        shift=OmegaConf.to_container(cfg.shift, resolve=True),
        train_transform=build_augmentation(transforms, cfg.seed),
        train_seed=cfg.seed,
    )


def build_classifier(
    cfg: DictConfig, backbone: torch.nn.Module, test_set_names: list[str], class_names: Sequence[str] = ()
) -> Classifier:
    scheduler = OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None
    interval = (
        scheduler.pop("interval", "epoch") if scheduler else "epoch"
    )  # Lightning's, not the scheduler's
    return Classifier(
        backbone,
        num_classes=cfg.data.num_classes,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(scheduler) if scheduler else None,
        scheduler_interval=interval,
        test_set_names=test_set_names,
        ece_bins=cfg.eval.ece_bins,
        consistency_shift=cfg.eval.consistency_shift,
        consistency_seed=cfg.seed,
        channels_last=cfg.get("channels_last", False),
        backbone_config=OmegaConf.to_container(cfg.arch, resolve=True),  # so a checkpoint stands alone
        class_names=class_names,
    )


def quality_control(cfg: DictConfig, saved: str | Path | None, references=()) -> list[QualityControl]:
    """The callback that fits and calibrates the run's detectors before its test (none when qc.detectors
    is empty). `saved`: the run folder whose qc.pt it may reuse (None: always fit); `references`: (run
    dir, classifier) pairs from `shapeshift.engine.references`."""
    return [QualityControl(cfg.qc, saved, references)] if cfg.qc.detectors else []


def test_metrics(trainer, model: Classifier, datamodule, ckpt_path: str | None = None) -> dict[str, float]:
    """Run the test loop over every evaluation set; per-set metrics plus family and o.o.d. means, and
    which gate the QC metrics describe (`model.test_run` holds the rest: curves, predictions)."""
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    return {**aggregate(model.test_run.metrics), **model.test_run.qc_summary}
