"""The code stays as `make lint` wants it: ruff's rules and its layout (pyproject.toml), checked in CI too."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(command):
    # ruff is a dev dependency (`pip install -e '.[dev]'`, what CI installs): missing, this fails, not skips.
    proc = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
