import os
from pathlib import Path

import pytest

# Before anything imports wandb or albumentations: no network, no prompts.
os.environ["WANDB_MODE"] = "disabled"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
os.environ.setdefault("HYDRA_FULL_ERROR", "0")


def pytest_configure(config):
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        return  # pytest-xdist's controller only hands tests out: its workers run them and import torch
    from shapeshift.engine.runtime import fast_cpu_math

    fast_cpu_math()  # as the entry points do: before torch creates its thread pool
    # Under pytest-xdist (`-n N`) the workers share the cores; each one's torch gets its share, not all.
    if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One render cache for the whole session, as one sweep would share it."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["SHAPESHIFT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cache_dir):
    """One smoke run of the cnn (2 epochs, every detector), trained once for the whole session: what the
    evaluate and audit tests read. Tests that break or rewrite a run copy it first."""
    from shapeshift.train import train
    from tests.helpers import make_cfg, save_job_config

    run_dir = tmp_path_factory.mktemp("qc") / "run"
    from shapeshift.config.schema import DETECTORS

    every = [
        f"qc.detectors=[{','.join(DETECTORS)}]",
        "qc.gate=mahalanobis_stages",
    ]  # smoke's own QC is lighter
    cfg = make_cfg(
        ["debug=smoke", "logger=none", "arch=cnn", "trainer.max_epochs=2", *every], run_dir, cache_dir
    )
    train(cfg)
    save_job_config(cfg, run_dir)
    return run_dir


@pytest.fixture
def cfg_factory(tmp_path, cache_dir):
    from tests.helpers import LIGHT_QC, make_cfg

    def factory(*overrides: str, output_dir: Path | None = None):
        qc = [] if any(o.startswith("qc.") for o in overrides) else LIGHT_QC
        return make_cfg([*qc, *overrides], output_dir or tmp_path / "run", cache_dir)

    return factory
