"""Evaluate trained runs again, without retraining: on a shift added after training, or a chosen few.

    python -m shapeshift.evaluate run=outputs/runs/2026-11-28/15-30-27-063380
    python -m shapeshift.evaluate run=outputs/sweeps/2026-11-28/16-00-00-000000 families=[rotation,squash]

Each run is rebuilt from its own saved config (`.hydra/config.yaml`), not today's defaults; only the
catalog is today's. Results go to `evaluation.json` beside the run's `metrics.json`, which is never touched.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from shapeshift.config import ConfigError, TrainConfig, register_schemas
from shapeshift.data import shifts
from shapeshift.loggers import silence_known_noise
from shapeshift.pipeline import build_backbone, build_classifier, build_datamodule, test_metrics
from shapeshift.results import METRICS_FILE, read_metrics, tidy, write_metrics
from shapeshift.run_dir import checkpoint_file
from shapeshift.runtime import fast_cpu_math

log = logging.getLogger("shapeshift")
register_schemas()
fast_cpu_math()


class RunError(ConfigError):
    """A run that cannot be loaded: no config, no checkpoint, a corrupt checkpoint."""


def find_runs(path: str | Path) -> list[Path]:
    """The run itself, or every run below a sweep dir (a run is a dir with `.hydra/config.yaml`)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise RunError(f"{root} is not a directory")
    if (root / ".hydra" / "config.yaml").is_file():
        return [root]
    runs = sorted(p.parent.parent for p in root.rglob("config.yaml") if p.parent.name == ".hydra")
    if not runs:
        raise RunError(f"no runs under {root} (a run dir holds .hydra/config.yaml)")
    return runs


def load_run_config(run_dir: Path) -> DictConfig:
    """The run's saved config over today's schema defaults (a run older than a new key still loads)."""
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    with open_dict(cfg):
        cfg.output_dir = str(run_dir)  # saved as ${hydra:runtime.output_dir}, which only Hydra resolves
    return cfg


def checkpoint_path(run_dir: Path) -> Path:
    if (run_dir / METRICS_FILE).is_file():
        saved = read_metrics(run_dir).get("checkpoint")
        if saved:
            return run_dir / saved
    # An unfinished run: the weights its config would evaluate.
    which = OmegaConf.select(load_run_config(run_dir), "eval.checkpoint", default="last")
    return checkpoint_file(run_dir, which)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        return ckpt["state_dict"]
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means the file cannot be trusted
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise RunError(f"checkpoint {path} is unreadable ({type(err).__name__}: {first})") from err


def arch_name(run_dir: Path, cfg: DictConfig) -> str:
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        choice = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.runtime.choices.arch")
        if choice:
            return str(choice)
    return cfg.arch._target_.rsplit(".", 1)[-1].lower()


def load_model(run_dir: Path, cfg: DictConfig, test_set_names: list[str]):
    """The run's classifier with its checkpoint's weights, in eval mode."""
    model = build_classifier(cfg, build_backbone(cfg, arch_name(run_dir, cfg)), test_set_names)
    model.load_state_dict(load_state_dict(checkpoint_path(run_dir)))
    return model.eval()


def evaluate_run(run_dir: Path, shift: DictConfig, families: list[str] | None, out: str = "evaluation.json",
                 accelerator: str = "cpu") -> dict:
    if Path(out).name == METRICS_FILE:
        raise ConfigError(f"out={out} would overwrite the training results; choose another name")
    cfg = load_run_config(run_dir)
    # Today's families, at the run's own set sizes (so the i.i.d. test set and shapes are the run's).
    today = OmegaConf.to_container(shift, resolve=True).get("families") or {}
    selected = shifts.select(today, list(families) if families else None)
    with open_dict(cfg):
        cfg.shift.families = selected
    datamodule = build_datamodule(cfg, augment=False)
    model = load_model(run_dir, cfg, datamodule.test_set_names)
    trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, deterministic=True, default_root_dir=str(run_dir))
    t0 = time.perf_counter()
    metrics = test_metrics(trainer, model, datamodule)
    metrics.update({"checkpoint": str(checkpoint_path(run_dir).relative_to(run_dir)),
                    "families": sorted(selected), "time/test_s": time.perf_counter() - t0})
    metrics = tidy(metrics)
    write_metrics(run_dir, metrics, name=out)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    silence_known_noise()
    try:
        runs = find_runs(cfg.run)
        if cfg.families:
            shifts.select(cfg.shift.families, list(cfg.families))
    except ConfigError as err:
        print(f"shapeshift: {err}", file=sys.stderr)
        sys.exit(2)
    failed = 0
    for run_dir in runs:
        try:
            metrics = evaluate_run(run_dir, cfg.shift, cfg.families, cfg.out, cfg.accelerator)
        except ConfigError as err:
            failed += 1
            print(f"shapeshift: {run_dir}: {err}", file=sys.stderr)
            continue
        print(f"{run_dir}: iid {metrics.get('test/iid/acc')}, ood {metrics.get('test/ood/acc')} -> {run_dir / cfg.out}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
