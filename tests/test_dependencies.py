"""The environment the tests run in is the one `constraints.txt` pins: CI installs with it (make install)."""

import os
import re
from importlib import metadata

import pytest

from tests.helpers import ROOT


def pinned() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_install_uses_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -c constraints.txt -e" in makefile
    assert "torch" not in {canonical(n) for n in pinned()}  # its build depends on the machine: pinned apart
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI installs through the Makefile


@pytest.mark.skipif(not os.environ.get("CI"), reason="a hand-made environment may differ; CI's must not")
def test_ci_runs_with_exactly_the_pinned_versions():
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differ = {
        n: (v, installed.get(canonical(n))) for n, v in pinned().items() if installed.get(canonical(n)) != v
    }
    assert not differ, f"pinned vs installed: {differ}"
