import os
from pathlib import Path

import pytest

# Before anything imports wandb or albumentations: no network, no prompts.
os.environ["WANDB_MODE"] = "disabled"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
os.environ.setdefault("HYDRA_FULL_ERROR", "0")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from shapeshift.config import register_schemas  # noqa: E402
from shapeshift.runtime import fast_cpu_math  # noqa: E402

fast_cpu_math()  # as the entry points do: before torch creates its thread pool

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
ARCHS = sorted(p.stem for p in (CONF / "arch").glob("*.yaml"))
AUGS = sorted(p.stem for p in (CONF / "aug").glob("*.yaml"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One render cache for the whole session, as one sweep would share it."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["SHAPESHIFT_CACHE"] = str(path)
    return path


def make_cfg(overrides: list[str], output_dir: Path, cache: Path):
    """Compose `conf/train.yaml` as the CLI would, with outputs and cache in temporary folders."""
    GlobalHydra.instance().clear()
    register_schemas()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # a real run's job config has no hydra node either
        cfg.output_dir = str(output_dir)
        cfg.data.cache_dir = str(cache)
    return cfg


@pytest.fixture
def cfg_factory(tmp_path, cache_dir):
    def factory(*overrides: str, output_dir: Path | None = None):
        return make_cfg(list(overrides), output_dir or tmp_path / "run", cache_dir)

    return factory
