"""The commands that work on finished runs (evaluate, audit, explain) and the benchmarks use the GPU when
there is one, as training does: `accelerator=auto`. No GPU needed: `torch.cuda.is_available` is replaced,
and the model's move to the device is intercepted before anything runs on it."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import shapeshift.evaluate
from benchmarks import training
from benchmarks.common import settings
from shapeshift.audit.screen import screen
from shapeshift.config.schema import AuditConfig, EvaluateConfig, ExplainConfig
from shapeshift.engine.runtime import device_for
from shapeshift.explain.saliency import explain_sets
from tests.helpers import CONF


class Stop(Exception):
    """Raised by a stand-in once it has recorded what it was given: nothing else needs to run."""


@pytest.fixture(params=[False, True], ids=["cpu-only", "gpu"])
def has_gpu(request, monkeypatch) -> bool:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: request.param)
    return request.param


@pytest.mark.parametrize("schema", [EvaluateConfig, AuditConfig, ExplainConfig])
def test_schemas_default_to_auto(schema):
    assert schema.accelerator == "auto"


@pytest.mark.parametrize(
    ("name", "overrides"), [("evaluate", ["run=x"]), ("audit", ["run=x", "images=y"]), ("explain", ["run=x"])]
)
def test_command_configs_default_to_auto(name, overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        assert compose(name, overrides=overrides).accelerator == "auto"
        assert compose(name, overrides=[*overrides, "accelerator=cpu"]).accelerator == "cpu"


def test_device_for(has_gpu):
    assert device_for("auto") == torch.device("cuda" if has_gpu else "cpu")
    assert device_for("cpu") == torch.device("cpu")
    assert device_for("gpu") == device_for("cuda") == torch.device("cuda")


def record_trainer(seen: dict):
    def trainer(**kwargs):
        seen.update(kwargs)
        raise Stop

    return trainer


def test_evaluate_runs_on_the_gpu_when_there_is_one(has_gpu, monkeypatch, tmp_path):
    """`auto` by default; deterministic on the CPU, "warn" on a GPU (reflection padding has no deterministic
    CUDA backward, so `True` would raise for antialiased-cnns)."""
    cfg = OmegaConf.create(
        {
            "trainer": {"precision": "32-true"},
            "shift": {"families": {}},
            "qc": {"detectors": [], "reference": None},
        }
    )
    monkeypatch.setattr(shapeshift.evaluate, "load_run_config", lambda run_dir: cfg)
    monkeypatch.setattr(
        shapeshift.evaluate,
        "build_datamodule",
        lambda cfg, augment: type("DM", (), {"test_set_names": ["iid"]}),
    )
    monkeypatch.setattr(shapeshift.evaluate, "load_model", lambda *args: None)
    monkeypatch.setattr(shapeshift.evaluate, "checkpoint_path", lambda *args: tmp_path / "last.ckpt")
    monkeypatch.setattr(shapeshift.evaluate, "quality_control", lambda *args: [])
    seen: dict = {}
    monkeypatch.setattr(shapeshift.evaluate.L, "Trainer", record_trainer(seen))
    with pytest.raises(Stop):
        shapeshift.evaluate.evaluate_run(tmp_path, OmegaConf.create({"families": {}}), None)
    assert seen["accelerator"] == "auto"
    assert seen["deterministic"] == ("warn" if has_gpu else True)
    seen.clear()
    with pytest.raises(Stop):
        shapeshift.evaluate.evaluate_run(
            tmp_path, OmegaConf.create({"families": {}}), None, accelerator="cpu"
        )
    assert (seen["accelerator"], seen["deterministic"]) == ("cpu", True)


class Model:
    """Records the device it is moved to, then stops the caller."""

    def __init__(self):
        self.moved_to = None

    def to(self, device):
        self.moved_to = device
        raise Stop


@pytest.mark.parametrize("accelerator", [None, "auto", "cpu"])
def test_audit_and_explain_move_the_model_to_the_chosen_device(has_gpu, accelerator):
    expected = torch.device("cuda" if has_gpu and accelerator in (None, "auto") else "cpu")
    kwargs = {} if accelerator is None else {"accelerator": accelerator}
    model = Model()
    with pytest.raises(Stop):
        screen(None, None, 0.95, (None, None, model), **kwargs)
    assert model.moved_to == expected
    model = Model()
    with pytest.raises(Stop):
        explain_sets(model, None, ["iid"], 4, **kwargs)
    assert model.moved_to == expected


def test_bench_trainers_take_the_accelerator_option(has_gpu, monkeypatch):
    assert settings.accelerator == "auto"
    cfg = OmegaConf.create(
        {"trainer": {"precision": "32-true", "deterministic": True, "log_every_n_steps": 50}}
    )
    for accelerator in ("auto", "cpu"):
        monkeypatch.setattr(settings, "accelerator", accelerator)
        seen: dict = {}
        monkeypatch.setattr(training.L, "Trainer", record_trainer(seen))
        with pytest.raises(Stop):
            training.lightning_loop(cfg, None, None, 1, 0)
        assert seen["accelerator"] == accelerator
