"""`python -m shapeshift.audit run=<run or sweep dir> images=<folder>`: see `shapeshift/audit/__init__.py`."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from shapeshift.audit.command import audit, rank_sweep, summary
from shapeshift.audit.ranking import recommendation
from shapeshift.console.errors import command_errors
from shapeshift.runs.folder import find_runs
from shapeshift.tracking.loggers import silence_known_noise


@hydra.main(version_base="1.3", config_path="../../conf", config_name="audit")
def main(cfg: DictConfig) -> None:
    silence_known_noise()
    with command_errors(user_errors=(FileNotFoundError,)):
        if len(find_runs(Path(cfg.run).expanduser())) > 1:
            result = rank_sweep(
                cfg.run,
                cfg.images,
                cfg.out,
                cfg.keep,
                cfg.accelerator,
                cfg.reference,
                cfg.gate,
                cfg.labels,
                cfg.drift,
                cfg.nearest,
                cfg.sheet,
            )
            best = result["best"]
            print(f"ranked {len(result['runs'])} runs -> {result['md']}")
            print(
                f"deploy: arch={best['arch']} aug={best['aug']}"
                + ("" if result["labelled"] else " (unlabelled sample: ranked by the estimated accuracy)")
            )
            print(recommendation_text(result))
        else:
            result = audit(
                cfg.run,
                cfg.images,
                cfg.out,
                cfg.keep,
                cfg.sheet,
                cfg.accelerator,
                cfg.reference,
                cfg.gate,
                cfg.drift,
                cfg.nearest,
            )
            print(summary(result))


def recommendation_text(result: dict) -> str:
    lines = recommendation(result, result["labelled"])
    return "\n".join(line.removeprefix("- ").replace("**", "") for line in lines[2:] if line)


if __name__ == "__main__":
    main()
