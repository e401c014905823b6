"""`ckpt_path`: a run that starts from any checkpoint file, resumed or fine-tuned.

    python -m shapeshift.train ckpt_path=<run>/checkpoints/last.ckpt trainer.max_epochs=10
    python -m shapeshift.train ckpt_path=<file> ckpt_mode=finetune aug=strong optimizer.lr=1e-4

- `ckpt_mode=resume` (lightning-hydra-template's `ckpt_path`, Lightning's `fit(ckpt_path=...)`): the file's
  weights, optimizer and scheduler state, epoch and step; training continues up to `trainer.max_epochs`,
  counted from the file's first epoch.
- `ckpt_mode=finetune`: the file's weights only; a fresh optimizer, `trainer.max_epochs` epochs from epoch 0.

The file is read once before training, and only read. A missing or unreadable file, a weights-only file
(`best.ckpt`) to resume, one with no epoch left to train, or weights that do not fit this config's model
(another architecture or number of classes) fail in one line. The file's content is part of the run's
fingerprint (`shapeshift.runs.fingerprint`). A run folder holding its own `last.ckpt` (an interrupted run)
resumes from that, never from `ckpt_path` again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from shapeshift.config.errors import ConfigError

log = logging.getLogger("shapeshift")
MODES = ("resume", "finetune")


@dataclass
class StartFrom:
    path: Path
    mode: str
    checkpoint: dict = field(repr=False)  # memory-mapped: tensors are read when the weights are loaded

    @classmethod
    def open(cls, cfg: DictConfig) -> StartFrom | None:
        """The configured file, read and checked (ConfigError otherwise); None without `ckpt_path`."""
        mode = cfg.get("ckpt_mode", "resume")
        if mode not in MODES:
            raise ConfigError(f"ckpt_mode must be resume or finetune, got {mode!r}")
        if not cfg.get("ckpt_path"):
            return None
        path = Path(cfg.ckpt_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"ckpt_path={cfg.ckpt_path}: no such file")
        try:
            checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure to unpickle means the file cannot be used
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise ConfigError(
                f"ckpt_path={path} is not a readable checkpoint ({type(err).__name__}: {first})"
            ) from err
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
            raise ConfigError(f"ckpt_path={path} is not a Lightning checkpoint (it has no state_dict)")
        start = cls(path, mode, checkpoint)
        if mode == "resume":
            start._check_resumable(cfg.trainer)
        return start

    def _check_resumable(self, trainer: DictConfig) -> None:
        if "optimizer_states" not in self.checkpoint or "loops" not in self.checkpoint:
            raise ConfigError(
                f"ckpt_path={self.path} holds weights only (no optimizer or loop state), so it cannot be "
                "resumed; ckpt_mode=finetune trains from its weights"
            )
        done, max_epochs = epochs_done(self.checkpoint), trainer.get("max_epochs")
        if max_epochs is not None and 0 <= max_epochs <= done:
            raise ConfigError(
                f"ckpt_path={self.path} has trained {done} epochs: trainer.max_epochs={max_epochs} leaves "
                f"none to resume; raise trainer.max_epochs, or ckpt_mode=finetune trains {max_epochs} more"
            )

    def check_fits(self, model: torch.nn.Module, arch: str, arch_target: str) -> None:
        """One line when the file's weights are not this config's model: another backbone class, another
        number of classes, a layer missing or extra, another shape."""
        theirs, ours = self.checkpoint["state_dict"], model.state_dict()
        hparams = self.checkpoint.get("hyper_parameters") or {}
        their_target = (hparams.get("backbone_config") or {}).get("_target_")
        problems = []
        if their_target and their_target != arch_target:
            problems.append(f"it holds a {their_target}, not a {arch_target}")
        elif hparams.get("num_classes") and hparams["num_classes"] != model.num_classes:
            problems.append(f"it holds {hparams['num_classes']} classes")
        reshaped = [k for k in ours if k in theirs and tuple(theirs[k].shape) != tuple(ours[k].shape)]
        missing = [k for k in ours if k not in theirs]
        extra = [k for k in theirs if k not in ours]
        if reshaped:
            k = reshaped[0]
            problems.append(f"{k} is {list(theirs[k].shape)} there, {list(ours[k].shape)} here")
        elif missing or extra:
            problems.append(
                f"it has no {missing[0]}" if missing else f"it has {extra[0]}, which this has not"
            )
        if problems:
            raise ConfigError(
                f"ckpt_path={self.path} does not fit arch={arch} with {model.num_classes} classes: "
                + "; ".join(problems)
            )

    def fit_from(self, model: torch.nn.Module, own_resume: Path | None) -> Path | None:
        """Where `trainer.fit` resumes: the folder's own `last.ckpt` first, else this file (resume); for
        finetune, the file's weights are loaded into `model` now and training starts afresh."""
        if own_resume is not None:
            return own_resume
        if self.mode == "resume":
            return self.path
        model.load_state_dict(self.checkpoint["state_dict"])
        log.info("fine-tuning from the weights of %s (a fresh optimizer, epoch 0)", self.path)
        return None


def epochs_done(checkpoint: dict) -> int:
    """Epochs the checkpoint's run had finished training (a save at an epoch's end counts that epoch)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return int(checkpoint.get("epoch", -1)) + 1
