"""What a run folder holds, and whether a folder holds the run a config asks for. Torch-free.

A run folder is made by `shapeshift.train` and read by every other command:

    .hydra/config.yaml  the composed config (Hydra's)      run.json           fingerprint, identity, W&B id
    checkpoints/        last.ckpt (newest), best.ckpt      metrics.json       results; written last
    error.txt           why the job failed                 train.log          the run's log

The fingerprint is a digest of every config key that changes what a run computes. A folder that already
holds a finished or interrupted run is reused (skipped, resumed) only when the fingerprints match.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"
RECORD_FILE = "run.json"
HYDRA_DIR = ".hydra"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINTS = ("last", "best")  # eval.checkpoint: the final epoch, or the lowest validation loss

# The config sections that decide a run's results (`debug` is a group: its effect shows in data/trainer,
# and its choice is added below so a smoke run never matches a full one).
FINGERPRINTED = ("seed", "data", "arch", "aug", "shift", "trainer", "optimizer", "scheduler", "eval")
# Keys inside those sections that change where or how verbosely a run works, not what it computes.
NOT_FINGERPRINTED = {
    "data.cache_dir", "data.num_workers", "data.root", "data.eval_batch_size",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
}


class RunMismatch(ValueError):
    """The folder holds a run made with another config: it is neither returned nor resumed."""


def checkpoint_file(run_dir: str | os.PathLike, which: str = "last") -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{which}.ckpt"


def is_finished(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / METRICS_FILE).is_file()


def is_started(run_dir: str | os.PathLike) -> bool:
    """Finished, or interrupted with a checkpoint to resume from: either way, results exist to protect."""
    return is_finished(run_dir) or checkpoint_file(run_dir, "last").is_file()


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def fingerprint_keys(cfg: DictConfig, debug: str | None = None) -> dict[str, Any]:
    """The resolved values of every key that changes results, flattened to `section.key` names."""
    chosen = {key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig) else cfg[key]
              for key in FINGERPRINTED if key in cfg}
    keys = {k: v for k, v in flatten(chosen).items() if k not in NOT_FINGERPRINTED}
    keys["debug"] = debug
    return keys


def digest(keys: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>"))


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
    raise RunMismatch(f"{run_dir} holds a {state} run that {reason}; nothing was changed. "
                      "Rerun with force=true to replace it, or choose another folder (hydra.run.dir=... "
                      "or hydra.sweep.dir=...)")


def new_record(run_dir: Path, keys: dict[str, Any], identity: dict[str, Any], wandb_id: str | None) -> dict:
    return {"fingerprint": digest(keys), "keys": keys, "identity": identity, "wandb_id": wandb_id,
            "hydra_files": hydra_files(run_dir)}
