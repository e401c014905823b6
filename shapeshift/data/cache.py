"""Rendered sets on disk, keyed by the config that made them.

A sweep's jobs share one cache directory: the first job renders a set, the others read it. Files are
written to a temporary name and renamed, so a reader never sees half a file and two jobs rendering the
same set at once both leave a complete one. A checksum stored inside each file catches truncation or
corruption; a bad file is rendered again, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Bump when rendering code changes what a given config produces, so stale files are never read.
RENDER_VERSION = 2
_CHECKSUM = "__sha256__"


def cache_key(spec: dict) -> str:
    blob = json.dumps({"version": RENDER_VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _read(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        log.warning("cache file %s is unreadable (%s); rendering it again", path, err)
        return None
    stored = arrays.pop(_CHECKSUM, None)
    if stored is None or str(stored) != _checksum(arrays):
        log.warning("cache file %s fails its checksum; rendering it again", path)
        return None
    return arrays


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{_CHECKSUM: np.array(_checksum(arrays))})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached(
    cache_dir: str | os.PathLike | None,
    name: str,
    spec: dict,
    build: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Return the arrays for `spec`, rendering them with `build` only if no valid file exists."""
    if cache_dir is None:
        return build()
    path = Path(cache_dir).expanduser() / f"{name.replace('/', '_')}-{cache_key(spec)}.npz"
    if path.exists():
        arrays = _read(path)
        if arrays is not None:
            return arrays
    arrays = build()
    _write(path, arrays)
    log.debug("rendered %s -> %s", name, path)
    return arrays
