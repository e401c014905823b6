"""`python -m shapeshift.explain run=<run dir>`: see `shapeshift/explain/__init__.py`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from shapeshift.console.errors import command_errors
from shapeshift.explain.command import explain
from shapeshift.tracking.loggers import silence_known_noise


@hydra.main(version_base="1.3", config_path="../../conf", config_name="explain")
def main(cfg: DictConfig) -> None:
    silence_known_noise()
    with command_errors(user_errors=(FileNotFoundError,)):
        path = explain(cfg.run, list(cfg.sets), cfg.n, cfg.out, cfg.accelerator)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
