"""Progress on the long steps outside Lightning's loops: fitting and calibrating the detectors, evaluating,
auditing and reporting a sweep. Drawn with Rich, as Lightning draws its own bar, and only on a terminal:
logs, CI and tests see nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def track(
    items: Iterable[T], description: str, total: int | None = None, console: Console | None = None
) -> Iterator[T]:
    """`items`, one at a time, with a transient bar on stderr when it is a terminal (or on `console`)."""
    if console is None and not sys.stderr.isatty():
        yield from items
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True), transient=True) as progress:
        yield from progress.track(items, total=total, description=description)
