"""What every benchmark shares: the settings main() sets, configs, timing, and the results file."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Before lightning, wandb and albumentations are imported: `benchmarks.bench` imports this module first.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402

# As shapeshift's entry points do, before the thread pool exists; `--no-ftz` measures without it.
torch.set_flush_denormal("--no-ftz" not in sys.argv)
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import open_dict  # noqa: E402

import shapeshift.config.schema  # noqa: E402,F401 - the schemas the configs compose against
from shapeshift.engine.runtime import AUTO, choose_precision  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["cnn", "maxpool", "gap", "resnet18", "resnet18_aa"]
LINES: list[str] = []


@dataclass
class Settings:
    """Set once by main() from the options; every benchmark reads them from here."""

    trainer: str = "default"  # the trainer preset every figure is taken under (`--trainer`)
    accelerator: str = (
        AUTO  # the Trainers' accelerator (`--accelerator`): auto is the GPU when there is one, else the CPU
    )


settings = Settings()


def emit(line: str) -> None:
    print(line, flush=True)
    LINES.append(line)


def config(*overrides: str, cache: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", f"trainer={settings.trainer}", *overrides])
    with open_dict(cfg):
        cfg.output_dir = tempfile.mkdtemp(prefix="bench-run-")
        cfg.data.cache_dir = cache
        cfg.trainer.precision = choose_precision(cfg.trainer.precision, settings.accelerator)[
            0
        ]  # as train does
    return cfg


def median_rate(fn, n_items: int, repeats: int = 3) -> float:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n_items / (time.perf_counter() - t))
    return statistics.median(rates)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        name = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = name
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only (no GPU)"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"lightning {L.__version__}, {device}, python {platform.python_version()}"
    )


def append_results(out: Path) -> None:
    """Every emitted line, appended to `out` under the date and the command line."""
    stamp = time.strftime("%Y-%m-%d %H:%M")
    block = "\n".join(f"- {line}" for line in LINES)
    header = (
        ""
        if out.exists()
        else "# Benchmark results\n\nAppended by `python -m benchmarks.bench`; newest last.\n"
    )
    with out.open("a") as f:
        f.write(f"{header}\n## {stamp} `{' '.join(sys.argv[1:]) or '(default)'}`\n\n{block}\n")
    print(f"appended to {out}")
