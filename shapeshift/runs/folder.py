"""What a run folder holds, and whether a folder holds the run a config asks for. Torch-free.

A run folder is made by `shapeshift.train` and read by every other command:

    .hydra/config.yaml  the composed config (Hydra's)      run.json           fingerprint, identity, W&B id
    checkpoints/        last.ckpt (newest), best.ckpt      metrics.json       results; written last
    qc.pt               the fitted o.o.d. detectors        risk_coverage.json the gate's risk vs coverage
    qc_calibration.pt   calibrated gates, by their inputs
    error.txt           why the job failed                 train.log          the run's log

The fingerprint (`shapeshift.runs.fingerprint`) is a digest of every config key that changes what a run
computes. A folder that already holds a finished or interrupted run is reused (skipped, resumed) only when
the fingerprints match.
The metric keys of `metrics.json` are `shapeshift.runs.metric_keys`'.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shapeshift.runs.fingerprint import differing_keys, digest
from shapeshift.runs.metric_keys import is_number, tidy

METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"
RECORD_FILE = "run.json"
HYDRA_DIR = ".hydra"
CONFIG_FILE = f"{HYDRA_DIR}/config.yaml"
CHECKPOINT_DIR = "checkpoints"
QC_FILE = "qc.pt"
CALIBRATION_FILE = "qc_calibration.pt"  # the gate calibrated on the validation images, by its inputs
RISK_COVERAGE_FILE = "risk_coverage.json"
NOT_RUNS = {HYDRA_DIR, "wandb", CHECKPOINT_DIR, "csv", "audit", "__pycache__", ".git"}  # never searched


class RunMismatch(ValueError):
    """The folder holds a run made with another config: it is neither returned nor resumed."""


def checkpoint_file(run_dir: str | os.PathLike, which: str = "last") -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{which}.ckpt"


def is_finished(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / METRICS_FILE).is_file()


def is_started(run_dir: str | os.PathLike) -> bool:
    """Finished, or interrupted with a checkpoint to resume from: either way, results exist to protect."""
    return is_finished(run_dir) or checkpoint_file(run_dir, "last").is_file()


def read_record(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / RECORD_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict) -> Path:
    """Atomically: a reader (or a resumed sweep) never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)
    return path


def hydra_files(run_dir: Path) -> dict[str, str]:
    folder = run_dir / HYDRA_DIR
    return {p.name: p.read_text() for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def restore_hydra_files(run_dir: Path, files: dict[str, str]) -> None:
    """Hydra rewrites `.hydra/` before the job starts; a refused rerun puts the run's own files back."""
    for name, text in files.items():
        (run_dir / HYDRA_DIR / name).write_text(text)


def check_reuse(run_dir: Path, keys: dict[str, Any]) -> dict | None:
    """The folder's record if its run may be reused with these config keys; RunMismatch if it may not.

    Returns None when the folder holds no run yet (nothing trained, nothing to protect).
    """
    if not is_started(run_dir):
        return None
    record = read_record(run_dir)
    state = "finished" if is_finished(run_dir) else "interrupted"
    if record is None or "fingerprint" not in record:
        reason = "has no fingerprint (made before shapeshift recorded one), so its config cannot be checked"
    elif record["fingerprint"] != digest(keys):
        differ = differing_keys(record.get("keys", {}), keys)
        shown = ", ".join(differ[:6]) + (f" and {len(differ) - 6} more" if len(differ) > 6 else "")
        reason = f"was made with another config (differs in {shown or 'keys not recorded'})"
    else:
        return record
    if record and record.get("hydra_files"):
        restore_hydra_files(run_dir, record["hydra_files"])
    raise RunMismatch(
        f"{run_dir} holds a {state} run that {reason}; nothing was changed. "
        "Rerun with force=true to replace it, or choose another folder (hydra.run.dir=... "
        "or hydra.sweep.dir=...)"
    )


def new_record(run_dir: Path, keys: dict[str, Any], identity: dict[str, Any], wandb_id: str | None) -> dict:
    return {
        "fingerprint": digest(keys),
        "keys": keys,
        "identity": identity,
        "wandb_id": wandb_id,
        "hydra_files": hydra_files(run_dir),
    }


# -- metrics.json ------------------------------------------------------------------------------------------
def aug_label(name: str, magnitude: float) -> str:
    """`basic`, or `basic-x2` when `aug.magnitude` is not 1: a strength sweep's runs stay apart in reports."""
    return name if magnitude == 1 else f"{name}-x{magnitude:g}"


def write_metrics(run_dir: str | os.PathLike, metrics: dict, name: str = METRICS_FILE) -> Path:
    return write_json(Path(run_dir) / name, tidy(metrics))


def write_files(run_dir: str | os.PathLike, files: Mapping[str, dict | Callable[[Path], object]]) -> None:
    """Every file a command adds to a run folder, in the order given: a dict is written as JSON, a callable
    (a torch save, from a layer that knows torch) is handed the file's path. The one way into a run
    folder besides the lifecycle's own record, so where each file goes is decided here."""
    for name, content in files.items():
        path = Path(run_dir) / name
        if callable(content):
            content(path)
        else:
            write_json(path, content)


def read_metrics(run_dir: str | os.PathLike, name: str = METRICS_FILE) -> dict:
    return json.loads((Path(run_dir) / name).read_text())


# -- failures ----------------------------------------------------------------------------------------------
def record_failure(run_dir: Path, err: BaseException) -> None:
    """The failed job's error in its own folder, so a sweep report can say why it has no results. Only into
    a folder that exists (Hydra made it for the job, or the run claimed it): a job refused before it
    started, called in process, leaves no folder behind."""
    if not run_dir.is_dir():
        return
    try:
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        (run_dir / ERROR_FILE).write_text(f"{type(err).__name__}: {err}\n\n{text}")
    except OSError:
        pass


def error_line(run_dir: Path) -> str | None:
    """`error.txt: <first non-empty line>` of a failed run, or None."""
    try:
        with (run_dir / ERROR_FILE).open(errors="replace") as f:
            first = next((line.strip() for line in f if line.strip()), None)
    except OSError:
        return None
    return f"{ERROR_FILE}: {first}" if first else f"{ERROR_FILE} (empty)"


# -- finding runs and who they are -----------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    """A run folder holds its Hydra config, its record or its metrics (a folder copied without .hydra too)."""
    return (path / CONFIG_FILE).is_file() or (path / RECORD_FILE).is_file() or (path / METRICS_FILE).is_file()


def find_runs(roots: list[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """Every run folder at or under `roots`, each once, in natural order (`10_...` after `9_...`)."""
    roots = [roots] if isinstance(roots, (str, os.PathLike)) else roots
    found: dict[Path, Path] = {}
    for root in map(Path, roots):
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a directory")
        for dirpath, dirnames, _ in os.walk(root):
            path = Path(dirpath)
            if is_run_dir(path):
                found.setdefault(path.resolve(), path)
                dirnames.clear()  # a run holds no other runs
            else:
                dirnames[:] = sorted(d for d in dirnames if d not in NOT_RUNS)
    natural = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]  # noqa: E731
    return sorted(found.values(), key=natural)


def arch_name(choices: dict | None, arch_target: str | None) -> str | None:
    """The arch as the user chose it (the `conf/arch/` file), else the class name of its `_target_`."""
    if choices and choices.get("arch"):
        return str(choices["arch"])
    return arch_target.rsplit(".", 1)[-1].lower() if arch_target else None


# libyaml's parser when PyYAML was built with it (its wheels are): the same documents, ten times faster on
# a run's hydra.yaml (1.6 ms against 16 ms), which a report or a sweep audit reads hundreds of times.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml(path: Path):
    try:
        return yaml.load(path.read_text(), Loader=_LOADER)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError):
        return None


def read_json(path: Path):
    """A JSON file's content, or None when it is missing or broken."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


@dataclass
class RunInfo:
    """What a run folder says about itself; read with PyYAML and json only, so it is quick anywhere."""

    path: Path
    arch: str | None = None
    aug: str | None = None
    seed: int | None = None
    data: str | None = None
    families: list[str] = field(default_factory=list)  # the catalog's order, from the run's config
    catalog: dict = field(default_factory=dict)  # {family: its severities' operations}, from the same config
    metrics: dict | None = None  # None: no readable metrics.json, the run did not finish
    problem: str | None = None  # why there are no metrics: the error file's first line, or what is missing
    keys: dict | None = None  # the fingerprinted config keys (run.json), to tell variants of one arch apart


def read_run(path: Path, metrics_file: str = METRICS_FILE) -> RunInfo:
    """Identity from metrics.json, else run.json, else the Hydra files; a broken file is noted, not fatal.
    `metrics_file`: another results file of the run, such as `shapeshift.evaluate`'s evaluation.json."""
    info = RunInfo(path)
    config = _mapping(_yaml(path / CONFIG_FILE))
    hydra = _mapping(_mapping(_yaml(path / HYDRA_DIR / "hydra.yaml")).get("hydra"))
    choices = _mapping(_mapping(hydra.get("runtime")).get("choices"))
    record = _mapping(read_record(path))
    identity = _mapping(record.get("identity"))
    info.keys = record.get("keys") if isinstance(record.get("keys"), dict) else None
    aug = _mapping(config.get("aug"))
    info.arch = identity.get("arch") or arch_name(choices, _mapping(config.get("arch")).get("_target_"))
    info.aug = identity.get("aug") or (
        aug_label(aug["name"], aug.get("magnitude", 1)) if aug.get("name") else None
    )
    seed = identity.get("seed", config.get("seed"))
    info.seed = int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None
    info.data = choices.get("data")
    families = _mapping(config.get("shift")).get("families")
    info.families = [str(f) for f in families] if isinstance(families, dict) else []
    info.catalog = {str(f): v for f, v in families.items()} if isinstance(families, dict) else {}
    if (path / metrics_file).is_file():
        try:
            metrics = read_metrics(path, metrics_file)
            if metrics_file != METRICS_FILE:  # the run's identity and training facts, then the other results
                trained = _mapping(read_json(path / METRICS_FILE))
                metrics = {
                    **{k: v for k, v in trained.items() if not k.startswith("test/")},
                    **_mapping(metrics),
                }
            if not isinstance(metrics, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            info.problem = f"{metrics_file} unreadable: {str(err).splitlines()[0]}"
        else:
            info.metrics = metrics
            info.arch = str(metrics.get("arch") or info.arch or "?")
            info.aug = str(metrics.get("aug") or info.aug or "?")
            if is_number(metrics.get("seed")):
                info.seed = int(metrics["seed"])
    if info.metrics is None:
        info.problem = error_line(path) or info.problem or f"no {metrics_file} (unfinished or failed)"
    return info
