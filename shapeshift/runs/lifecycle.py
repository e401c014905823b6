"""A run folder's lifecycle around the experiment: claim it (skip a finished run, resume an interrupted
one, refuse another config's, replace with `force`), then write the result last. Torch-free.

`train()` claims the folder, then runs its experiment inside `RunFolder.running` (a failure is recorded,
W&B is closed), which ends in `RunFolder.finish`. What a folder holds and how a fingerprint is made is
`shapeshift.runs.folder`'s; nothing else writes into a run folder.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapeshift.runs.folder import (
    CHECKPOINT_DIR,
    ERROR_FILE,
    METRICS_FILE,
    RECORD_FILE,
    RunMismatch,
    check_reuse,
    checkpoint_file,
    digest,
    is_finished,
    new_record,
    read_metrics,
    record_failure,
    write_files,
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

    def finish(self, metrics: dict, files: Mapping[str, dict | Callable[[Path], object]] = ()) -> dict:
        """Write the run's other result files (`files`: name -> JSON dict, or a function that writes the
        path), then `metrics.json`, last: its presence marks the run finished."""
        write_files(self.path, dict(files))
        write_metrics(self.path, metrics)
        return metrics


@contextlib.contextmanager
def failures_recorded(
    path: Path, lead: bool = True, user_errors: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Around a whole job: its failure is written to the folder's `error.txt` (what a sweep's report says
    of a job with no results) and re-raised. Not a folder that holds another config's run: it is left as
    it was. `lead`: only the process that owns the folder writes. `user_errors` (a bad config) are said in
    one line on the console, not announced here with their traceback's place."""
    try:
        yield
    except RunMismatch:
        raise
    except Exception as err:
        if lead:
            record_failure(path, err)
            if not isinstance(err, (Interrupted, *user_errors)):
                log.error("job failed: %s: %s (traceback in %s)", type(err).__name__, err, path / ERROR_FILE)
        raise
