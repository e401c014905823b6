"""The run's Lightning callbacks from the `callbacks` group, its checkpoints first.

Checkpointing is configured in `conf/callbacks/model_checkpoint.yaml`, which every run includes:

- `callbacks.model_checkpoint` writes `checkpoints/last.ckpt`, the state a resumed run continues from and
  the weights `eval.checkpoint=last` evaluates. Any `ModelCheckpoint` argument can be set; settings that
  would leave no usable `last.ckpt` (another file name or folder, a monitored metric, weights only, nothing
  saved) are refused in one line before training.
- `callbacks.best_checkpoint` writes `checkpoints/best.ckpt`, only when `eval.checkpoint=best`.
- `FinalCheckpoint` saves the final epoch into `last.ckpt` when the configured schedule skipped it
  (`every_n_epochs=2` of 5 epochs, early stopping between two saves): the evaluation reads that file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from omegaconf import DictConfig

from shapeshift.config.errors import ConfigError

LAST, BEST = "model_checkpoint", "best_checkpoint"  # the nodes of conf/callbacks/model_checkpoint.yaml


def run_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list[Callback]:
    """Every callback of the `callbacks` group: the checkpoints (checked), then the others."""
    return [*checkpoint_callbacks(cfg, ckpt_dir), *configured_callbacks(cfg)]


def configured_callbacks(cfg: DictConfig) -> list[Callback]:
    """The callbacks chosen in the `callbacks` group besides checkpointing (early stopping, LR monitor)."""
    nodes = cfg.get("callbacks") or {}
    return [
        instantiate(node)
        for name, node in nodes.items()
        if name not in (LAST, BEST) and node and "_target_" in node
    ]


def checkpoint_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list[Checkpoint]:
    """`last.ckpt`'s ModelCheckpoint, `best.ckpt`'s when it is evaluated, and the final-epoch guard.

    Raises ConfigError (one line) when the settings would leave no `last.ckpt` (or no `best.ckpt` that
    `eval.checkpoint=best` needs) in `ckpt_dir`.
    """
    if cfg.trainer.get("enable_checkpointing") is False:
        raise ConfigError(
            "trainer.enable_checkpointing=false would leave no checkpoints/last.ckpt, which a resume and the "
            "evaluation read; set callbacks.model_checkpoint.every_n_epochs=0 to save only the final epoch"
        )
    last = _model_checkpoint(cfg, LAST, ckpt_dir, "last")
    _require(
        last.monitor is None,
        f"callbacks.{LAST}.monitor must be null: last.ckpt holds the newest epoch, not the best one "
        "(eval.checkpoint=best evaluates the best, saved by callbacks.best_checkpoint)",
    )
    _require(
        last.save_top_k != 0,
        f"callbacks.{LAST}.save_top_k=0 saves no last.ckpt; to save only the final epoch, "
        f"set callbacks.{LAST}.every_n_epochs=0",
    )
    _require(
        not last.save_weights_only,
        f"callbacks.{LAST}.save_weights_only=true leaves last.ckpt without the optimizer state that a "
        "resume needs",
    )
    found: list[Checkpoint] = [last]
    if cfg.eval.checkpoint == "best":
        best = _model_checkpoint(cfg, BEST, ckpt_dir, "best")
        _require(
            best.monitor is not None and best.save_top_k == 1,
            f"callbacks.{BEST} must monitor a metric (monitor=val/loss) and keep one file (save_top_k=1), "
            f"got monitor={best.monitor}, save_top_k={best.save_top_k}",
        )
        found.append(best)
    return [*found, FinalCheckpoint(Path(ckpt_dir) / "last.ckpt")]


def _model_checkpoint(cfg: DictConfig, name: str, ckpt_dir: Path, filename: str) -> ModelCheckpoint:
    """`callbacks.<name>`, built and checked to write `<ckpt_dir>/<filename>.ckpt`."""
    node = (cfg.get("callbacks") or {}).get(name)
    role = (
        "last.ckpt, which a resume and eval.checkpoint=last read"
        if filename == "last"
        else "best.ckpt, which eval.checkpoint=best evaluates"
    )
    if not node or "_target_" not in node:
        raise ConfigError(f"callbacks.{name} is missing: it writes checkpoints/{role}")
    try:
        callback = instantiate(node)
    except Exception as err:  # noqa: BLE001 - Lightning's MisconfigurationException, a bad _target_, ...
        cause = err.__cause__ or err  # Hydra wraps the constructor's own error
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigError(f"callbacks.{name}: {first}") from err
    _require(
        isinstance(callback, ModelCheckpoint),
        f"callbacks.{name} must be a lightning.pytorch.callbacks.ModelCheckpoint (it writes {role})",
    )
    expected = os.path.realpath(ckpt_dir)  # as ModelCheckpoint stores its dirpath
    _require(
        callback.dirpath is not None and os.path.realpath(callback.dirpath) == expected,
        f"callbacks.{name}.dirpath must be the run's checkpoints folder (${{output_dir}}/checkpoints, here "
        f"{expected}), got {callback.dirpath}: it writes {role}",
    )
    _require(
        callback.filename == filename,
        f"callbacks.{name}.filename must be {filename}, got {callback.filename}: it writes {role}",
    )
    return callback


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


class FinalCheckpoint(Checkpoint):
    """Saves the final epoch into `last.ckpt` when `callbacks.model_checkpoint`'s schedule did not.

    A `Checkpoint`, so Lightning runs it after the other callbacks (early stopping has decided) and after the
    ModelCheckpoints listed before it (theirs is the save it checks). Saved in the final epoch's end, like a
    ModelCheckpoint save, so the file records the same epoch and loop state as one saved on schedule.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.fast_dev_run or not self._final_epoch(trainer):
            return
        missing = None
        if trainer.is_global_zero:  # the rank that writes; the others follow its answer
            missing = not self.path.is_file() or _global_step(self.path) != trainer.global_step
        if trainer.strategy.broadcast(missing, src=0):
            trainer.save_checkpoint(self.path)

    @staticmethod
    def _final_epoch(trainer) -> bool:
        """True in the epoch after which `fit` stops (early stopping, max_steps, max_time included)."""
        max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
        return bool(
            trainer.should_stop
            or (max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs)
            or (max_steps is not None and 0 <= max_steps <= trainer.global_step)
        )


def _global_step(path: Path) -> int:
    """The training step a checkpoint was saved at (memory-mapped: its tensors are not read)."""
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True)["global_step"])
