"""Every command's way out: a user's mistake ends in one line on stderr and exit code 2, Ctrl-C in 130,
anything else in its traceback. (A run's `error.txt` is its folder's: `shapeshift.runs.lifecycle`.)"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from shapeshift.config.errors import ConfigError
from shapeshift.runs.folder import RunMismatch
from shapeshift.runs.lifecycle import Interrupted

log = logging.getLogger("shapeshift")


@contextlib.contextmanager
def command_errors(
    reraise: bool = False, user_errors: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """`reraise`: a multirun's job, which Hydra marks failed while the other jobs run on. `user_errors`:
    more exceptions a user's input causes (a missing image folder for `audit`), reported like a
    `ConfigError`."""
    try:
        yield
    except RunMismatch as err:  # the folder is another run's: leave it exactly as it was
        print(f"shapeshift: {err}", file=sys.stderr)
        if reraise:
            raise
        sys.exit(2)
    except (ConfigError, Interrupted, *user_errors) as err:
        kind = "config error: " if type(err) is ConfigError else ""  # not its kin (a run that cannot load)
        print(f"shapeshift: {kind}{err}", file=sys.stderr)
        if reraise:
            raise
        sys.exit(130 if isinstance(err, Interrupted) else 2)
