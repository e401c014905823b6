"""A run's config fingerprint: a digest of every config key that changes what the run computes. Torch-free.

A run folder records it (`run.json`, `metrics.json`); a finished or interrupted run is reused (skipped,
resumed) only by a config with the same fingerprint (`shapeshift.runs.folder.check_reuse`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# The config sections that decide a run's results (`debug` is a group: its effect shows in data/trainer,
# and its choice is added below so a smoke run never matches a full one).
FINGERPRINTED = (
    "seed",
    "data",
    "arch",
    "aug",
    "shift",
    "trainer",
    "optimizer",
    "scheduler",
    "eval",
    "qc",
    "callbacks",
)
# Every other top-level key: where a run writes and logs, how it is driven, how many threads compute it and
# in which memory layout (like the thread count, NHWC may round differently, never differs in what it
# computes). `ckpt_path` and `ckpt_mode` count through the file's digest (below). A key added to the
# schema goes on one of the two lists: tests/test_lifecycle.py fails until it does.
NOT_FINGERPRINTED_SECTIONS = (
    "output_dir",
    "logger",
    "torch_threads",
    "channels_last",
    "force",
    "optimized_metric",
    "paths",
    "ckpt_path",
    "ckpt_mode",
)
# Keys inside those sections that change where or how verbosely a run works, not what it computes.
NOT_FINGERPRINTED = {
    "data.cache_dir",
    "data.num_workers",
    "data.root",
    "data.eval_batch_size",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
}
# Keys added to a fingerprinted section after runs were made, with the value every earlier run computed
# with: counted only when set to something else, so a run made before the key existed keeps its fingerprint
# (and is still skipped as finished, or resumed). tests/test_old_runs.py holds such a run.
ADDED_LATER = {
    "data.resize": "crop",
    "data.val_fraction": 0.1,
    "data.test_fraction": 0.2,
    "data.max_skipped": 0.01,
    # Earlier runs used every reference; only runs with references compute anything else under `auto`, and
    # those changed with the code that chose them (as the reference gate's threshold did), not the config.
    "qc.invariances": "auto",
}
# Checkpointing (conf/callbacks/model_checkpoint.yaml). When and where last.ckpt is written never changes a
# result (its final epoch is always saved, and a resume ends with an uninterrupted run's metrics); best.ckpt's
# settings do, but only when it is evaluated (eval.checkpoint=best). The folder they write to is no result.
LAST_CHECKPOINT, BEST_CHECKPOINT = "callbacks.model_checkpoint.", "callbacks.best_checkpoint."


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def fingerprint_keys(cfg: DictConfig, debug: str | None = None) -> dict[str, Any]:
    """The resolved values of every key that changes results, flattened to `section.key` names.

    A run started from a checkpoint file (`ckpt_path`) adds the file's content digest and `ckpt_mode`:
    fine-tuned or resumed from a file, it is not the run trained from scratch, and the file's path is not
    what matters (a moved file is the same start, a file replaced at the same path is not).
    """
    chosen = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig) else cfg[key]
        for key in FINGERPRINTED
        if key in cfg
    }
    best_evaluated = OmegaConf.select(cfg, "eval.checkpoint") == "best"
    keys = {
        k: v
        for k, v in flatten(chosen).items()
        if _counts(k, best_evaluated) and not (k in ADDED_LATER and v == ADDED_LATER[k])
    }
    keys["debug"] = debug
    if cfg.get("ckpt_path"):  # absent otherwise: a run from scratch keeps the fingerprint it always had
        keys["ckpt_path"] = file_digest(cfg.ckpt_path)
        keys["ckpt_mode"] = cfg.get("ckpt_mode")
    return keys


def _counts(key: str, best_evaluated: bool) -> bool:
    if key in NOT_FINGERPRINTED or key.startswith(LAST_CHECKPOINT):
        return False
    if key.startswith(BEST_CHECKPOINT):
        return best_evaluated and key != f"{BEST_CHECKPOINT}dirpath"
    return True


def file_digest(path: str | Path) -> str:
    """`sha256:<first 16 hex digits>` of a file's bytes (OSError when it cannot be read)."""
    h = hashlib.sha256()
    with Path(path).expanduser().open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()[:16]}"


def digest(keys: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>"))
