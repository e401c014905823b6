"""Test plumbing shared by the suite: composing configs as the CLI does, and running the CLI itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

import shapeshift.config.schema  # noqa: F401 - stores the schemas the configs compose against

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
ARCHS = sorted(p.stem for p in (CONF / "arch").glob("*.yaml"))
AUGS = sorted(p.stem for p in (CONF / "aug").glob("*.yaml"))


class KillAtEpoch(Callback):
    """Dies as epoch `epoch` starts: the epochs before it and their checkpoint are complete."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"killed as epoch {self.epoch} starts")


# Quality control is fitted after every test run; one detector (no features) unless a test sets `qc.`:
# all eight take about twice as long as the rest of a smoke run. The QC tests set their own (trained_run:
# all eight). `cfg_factory` adds it.
LIGHT_QC = ["qc.detectors=[msp]", "qc.gate=msp"]


def without_measurements(metrics: dict) -> dict:
    """The results, without what depends on the machine's load: wall times and peak memory."""
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "memory/"))}


def compose_train(overrides: list[str]) -> DictConfig:
    """`conf/train.yaml` composed as the CLI would, the `hydra` node included."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def make_cfg(overrides: list[str], output_dir: Path, cache: Path) -> DictConfig:
    """A job config as `train(cfg)` receives it, with outputs and cache in temporary folders."""
    cfg = compose_train(overrides)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # a real run's job config has no hydra node either
        cfg.output_dir = str(output_dir)
        cfg.data.cache_dir = str(cache)
    return cfg


def save_job_config(cfg: DictConfig, run_dir: Path) -> None:
    """`.hydra/config.yaml`, as Hydra writes it for a CLI run: what `evaluate` and `audit` rebuild from."""
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")


def run_cli(
    module: str, args: list[str], cache_dir: Path | None = None, timeout: int = 600, **env: str
) -> subprocess.CompletedProcess:
    """`python -m shapeshift.<module> <args>` from the repository root, W&B disabled (~5 s of imports)."""
    environ = {**os.environ, "WANDB_MODE": "disabled", **env}
    if cache_dir is not None:
        environ["SHAPESHIFT_CACHE"] = str(cache_dir)
    return subprocess.run(
        [sys.executable, "-m", f"shapeshift.{module}", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(module: str, args: list[str], **env: str) -> subprocess.CompletedProcess:
    """`python -m shapeshift.<module> <args>` in this process: the module's `__main__` code run by runpy
    under this argv and environment, for command lines that end before a job starts (`--help`, Hydra's
    composition errors, the preflight). The same code as `run_cli` without a new process's imports; a
    command that runs a job belongs in `run_cli` (Hydra would set up its logging in this process)."""
    import contextlib
    import io
    import runpy
    import warnings

    argv, environ = sys.argv, dict(os.environ)
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [str(ROOT / "shapeshift" / f"{module}.py"), *args]
    os.environ.update({"WANDB_MODE": "disabled", **env})
    GlobalHydra.instance().clear()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is imported already
            runpy.run_module(f"shapeshift.{module}", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environ)
        GlobalHydra.instance().clear()
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def assert_metrics_consistent(metrics: dict, set_sizes: dict[str, int] | None = None) -> None:
    """Invariants every metrics.json obeys: a family's mean is the mean of its five severities, `ood` the
    mean over every family and severity (per metric); an accuracy on n images is a multiple of 1/n."""
    from shapeshift.runs.metric_keys import SEVERITY_KEY

    per_family: dict[tuple[str, str], list[float]] = {}
    for key, value in metrics.items():
        if (m := SEVERITY_KEY.match(key)) and value is not None:
            per_family.setdefault((m["family"], m["metric"]), []).append(value)
    assert per_family, "no per-severity metric"
    every: dict[str, list[float]] = {}
    for (family, metric), values in per_family.items():
        # Every severity has an accuracy; accepted_acc is null where the gate accepted nothing, a failure
        # AUROC where every prediction (i.i.d. set included) was right or every one wrong.
        assert len(values) == 5 or metric == "accepted_acc" or metric.startswith("failure_auroc/"), (
            family,
            metric,
        )
        assert metrics[f"test/{family}/{metric}"] == pytest.approx(sum(values) / len(values), abs=2e-6), (
            family,
            metric,
        )
        every.setdefault(metric, []).extend(values)
    for metric, values in every.items():
        assert metrics[f"test/ood/{metric}"] == pytest.approx(sum(values) / len(values), abs=2e-6), metric
    assert metrics["test/ood_iid_ratio"] == pytest.approx(
        metrics["test/ood/acc"] / metrics["test/iid/acc"], abs=1e-5
    )
    for name, n in (set_sizes or {}).items():
        correct = metrics[f"test/{name}/acc"] * n
        assert correct == pytest.approx(round(correct), abs=1e-3), (name, metrics[f"test/{name}/acc"], n)


def finished_wandb_records(run_dir: Path, timeout: float = 60.0) -> list:
    """The records of the offline run in `run_dir`, once its `exit` record is on disk. wandb's service
    process writes the file; `finish()` can return before the last block reaches it (seen in CI, with the
    service shared by the whole test session)."""
    import time

    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + timeout
    while True:
        try:
            records = list(wandb_records(next(Path(run_dir).glob("*.wandb"))))
        except DecodeError:  # a record half written as we read (seen under pytest-xdist): read again
            if time.monotonic() > deadline:
                raise
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def wandb_records(path: Path):
    """The protobuf records of an offline W&B run file (`run-<id>.wandb`): LevelDB-style 32 KiB blocks of
    7-byte-headed chunks after a 7-byte file header. What wandb itself writes, read without a server."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, chunk = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B", path
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0 or pos + 7 + length > len(data):
            break  # the end, or a chunk the service is still writing
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


def sweep_jobs(command_line: list[str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper launches, computed as BasicSweeper.sweep does: the config's
    `hydra.sweeper.params`, then the command line, parsed and expanded by `split_arguments`."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    # A multirun composes its sweep config without the command line's sweeps (they go to the sweeper).
    cfg = compose_train(
        [o.input_line for o in parser.parse_overrides(command_line) if not o.is_sweep_override()]
    )
    assert cfg.hydra.sweeper._target_ == "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()] + command_line
    overrides = parser.parse_overrides(params)
    return [job for batch in BasicSweeper.split_arguments(overrides, max_batch_size=None) for job in batch]
