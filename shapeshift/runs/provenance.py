"""Which code made a result: the git commit of the checkout shapeshift runs from. Torch-free.

Recorded in every `metrics.json` and evaluation file (key `commit`) and written into every report, so a
number can be traced to the code that computed it without asking who ran it.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

COMMIT_KEY = "commit"
PRECISION_KEY = "precision"
# The source that decides what a run computes; edits elsewhere (docs, tests) do not make a run "dirty".
SOURCE_PATHS = ("shapeshift", "conf")


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


@functools.cache
def code_commit() -> str:
    """`<12 hex digits>` of HEAD, `+dirty` when the package or its configs differ from it; for an
    installed copy outside a git checkout, `shapeshift <version>` (what is known, never a guess)."""
    root = Path(__file__).resolve().parents[2]  # shapeshift/runs/provenance.py -> the checkout
    head = _git(root, "rev-parse", "--short=12", "HEAD") if (root / ".git").exists() else None
    if not head:
        try:
            return f"shapeshift {metadata.version('shapeshift')}"
        except metadata.PackageNotFoundError:
            return "unknown"
    changed = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *SOURCE_PATHS)
    return head + ("+dirty" if changed else "")
