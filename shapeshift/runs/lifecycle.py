"""A run folder's lifecycle around the experiment: claim it (skip a finished run, resume an interrupted
one, refuse another config's, replace with `force`), then write the result last. Torch-free.

`train()` does the experiment between `RunFolder.claim` and `RunFolder.finish`; what a folder holds and
how a fingerprint is made is `shapeshift.runs.folder`'s.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapeshift.runs.folder import (
    CHECKPOINT_DIR,
    ERROR_FILE,
    METRICS_FILE,
    RECORD_FILE,
    check_reuse,
    checkpoint_file,
    digest,
    is_finished,
    new_record,
    read_metrics,
    write_json,
    write_metrics,
)

log = logging.getLogger("shapeshift")


class Interrupted(RuntimeError):
    """Training stopped before the end (Ctrl-C, a signal): nothing is presented as a result."""


@dataclass
class RunFolder:
    path: Path
    fingerprint: str
    wandb_id: str | None = None  # the W&B run this folder's run logs to (continued on resume)
    finished: dict | None = None  # the metrics of a finished run with the same config: nothing to do

    @classmethod
    def claim(
        cls,
        path: Path,
        keys: dict[str, Any],
        identity: dict[str, Any],
        *,
        force: bool = False,
        wandb: bool = False,
        lead: bool = True,
    ) -> RunFolder:
        """The folder, ready for this config's run; RunMismatch (folder untouched) if it holds another's.

        `lead`: this process owns the folder. Under DDP every rank claims it, and the others only read:
        they skip a finished run as rank 0 does and never write, delete or start a W&B run.
        """
        record = None if force else check_reuse(path, keys)
        folder = cls(path, digest(keys))
        if record is not None and is_finished(path):
            log.info("%s is finished (metrics.json exists, same config): skipped; force=true reruns it", path)
            folder.finished = read_metrics(path)
            return folder
        if not lead:
            return folder
        if force:
            (path / METRICS_FILE).unlink(missing_ok=True)
            shutil.rmtree(path / CHECKPOINT_DIR, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        (path / ERROR_FILE).unlink(missing_ok=True)
        # A resumed run continues its W&B run; a new one gets a fresh id, kept here for a later resume.
        folder.wandb_id = (record or {}).get("wandb_id") or (uuid.uuid4().hex[:8] if wandb else None)
        write_json(path / RECORD_FILE, new_record(path, keys, identity, folder.wandb_id))
        return folder

    @property
    def resume_from(self) -> Path | None:
        """The newest checkpoint of an interrupted run, where training continues."""
        last = checkpoint_file(self.path, "last")
        return last if last.is_file() else None

    def finish(self, metrics: dict) -> dict:
        """Write `metrics.json`, last: its presence marks the run finished."""
        write_metrics(self.path, metrics)
        return metrics
