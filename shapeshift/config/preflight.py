"""`python -m shapeshift.train`'s command line, checked before Hydra starts: a mistyped key and an output
folder that cannot be written end in one line and exit code 2, not in Hydra's traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shapeshift.config.validation import misspelled

CONF = Path(__file__).resolve().parents[2] / "conf"
# Where a command line can put the run: its own folder, its sweep's, or the folder both default to.
FOLDER_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "paths.log_dir")


def check_command_line(argv: list[str]) -> None:
    check_keys(argv)
    check_output_dir(argv)


def check_keys(argv: list[str]) -> None:
    """Fail in one line with a "did you mean" when a command-line key is not in the config."""
    problem = misspelled(argv, {p.name for p in CONF.iterdir() if p.is_dir()})
    if problem:
        print(f"shapeshift: {problem}", file=sys.stderr)
        sys.exit(2)


def check_output_dir(argv: list[str]) -> None:
    """Fail in one line when the run or sweep dir cannot be created: the one named on the command line,
    else `paths.log_dir` (the command line's, else SHAPESHIFT_LOG_DIR's, else `outputs`)."""
    named = {}
    for arg in argv:
        key, _, value = arg.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]  # Hydra's quoting, needed for folder names with commas (sweep job dirs)
        if key in FOLDER_KEYS and value and "${" not in value:
            named.setdefault(key, value)
    if run_dir := next(((k, v) for k, v in named.items() if k.startswith("hydra.")), None):
        key, value = run_dir  # the first of hydra.run.dir and hydra.sweep.dir on the command line
    elif "paths.log_dir" in named:
        key, value = "paths.log_dir", named["paths.log_dir"]
    elif os.environ.get("SHAPESHIFT_LOG_DIR"):
        key, value = "SHAPESHIFT_LOG_DIR", os.environ["SHAPESHIFT_LOG_DIR"]
    else:
        key, value = "output folder", "outputs"
    try:
        Path(value).expanduser().mkdir(parents=True, exist_ok=True)
        probe = Path(value).expanduser() / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        print(f"shapeshift: cannot write to {key} {value!r}: {err.strerror or err}", file=sys.stderr)
        sys.exit(2)
