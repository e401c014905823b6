import os
from pathlib import Path

import pytest

# Before anything imports wandb or albumentations: no network, no prompts.
os.environ["WANDB_MODE"] = "disabled"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
os.environ.setdefault("HYDRA_FULL_ERROR", "0")

from shapeshift.runtime import fast_cpu_math  # noqa: E402
from tests.helpers import ARCHS, AUGS, CONF, ROOT, make_cfg  # noqa: E402,F401 - re-exported for the tests

fast_cpu_math()  # as the entry points do: before torch creates its thread pool


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One render cache for the whole session, as one sweep would share it."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["SHAPESHIFT_CACHE"] = str(path)
    return path


@pytest.fixture
def cfg_factory(tmp_path, cache_dir):
    def factory(*overrides: str, output_dir: Path | None = None):
        return make_cfg(list(overrides), output_dir or tmp_path / "run", cache_dir)

    return factory
