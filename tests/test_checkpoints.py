"""Which weights a run evaluates, and where a killed run resumes, on a run whose validation accuracy
saturates in its first epoch: the case where "best accuracy" and a lazily written last.ckpt both mean
epoch 0."""

import re

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from shapeshift.train import train
from tests.helpers import LIGHT_QC, KillAtEpoch, make_cfg, without_measurements

# 13 steps per epoch; the strided CNN reaches val/acc 1.000 within its first epoch here.
SATURATING = [
    "debug=smoke",
    "logger=none",
    "arch=cnn",
    "data.image_size=32",
    "data.n_train_per_class=200",
    "data.batch_size=32",
    "trainer.max_epochs=4",
]
STEPS_PER_EPOCH = 13
THREE = [*SATURATING, "trainer.max_epochs=3"]  # the shared run's: the fewest epochs that tell them apart


class Record(Callback):
    """The epochs a fit actually trains, and each epoch's validation results."""

    def __init__(self):
        self.trained, self.val = [], {}

    def on_train_epoch_start(self, trainer, pl_module):
        self.trained.append(trainer.current_epoch)

    def on_validation_epoch_end(self, trainer, pl_module):
        m = trainer.callback_metrics
        self.val[trainer.current_epoch] = (float(m["val/acc"]), float(m["val/loss"]))


def stored(path) -> tuple[int, int]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt["epoch"], ckpt["global_step"]


class LastSaved(Callback):
    """The epoch `checkpoints/last.ckpt` holds as each epoch starts (None: not written yet)."""

    def __init__(self, run_dir):
        self.path, self.seen = run_dir / "checkpoints" / "last.ckpt", {}

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen[trainer.current_epoch] = stored(self.path)[0] if self.path.is_file() else None


@pytest.fixture(scope="module")
def whole(tmp_path_factory, cache_dir) -> tuple:
    """THREE trained uninterrupted with the default checkpoint schedule, once for this module: its folder,
    the epochs it trained and validated (Record), what last.ckpt held as each epoch began (LastSaved),
    and its metrics."""
    run_dir = tmp_path_factory.mktemp("checkpoints") / "whole"
    seen, saved = Record(), LastSaved(run_dir)
    metrics = train(make_cfg([*LIGHT_QC, *THREE], run_dir, cache_dir), callbacks=[seen, saved])
    return run_dir, seen, saved, metrics


def test_the_final_epoch_is_evaluated_and_a_killed_run_resumes_from_its_newest_epoch(
    whole, cfg_factory, tmp_path
):
    whole_dir, seen, _, metrics = whole
    assert seen.val[0][0] == 1.0  # saturated in epoch 0: the failing case
    assert seen.trained == [0, 1, 2]
    assert stored(whole_dir / "checkpoints" / "last.ckpt") == (2, 3 * STEPS_PER_EPOCH)
    assert not (whole_dir / "checkpoints" / "best.ckpt").exists()  # only written when evaluated
    assert (metrics["eval/checkpoint"], metrics["eval/epoch"], metrics["eval/step"]) == (
        "last",
        2,
        3 * STEPS_PER_EPOCH,
    )
    assert metrics["checkpoint"] == "checkpoints/last.ckpt" and metrics["epochs"] == 3
    assert metrics["val/loss"] == pytest.approx(
        seen.val[2][1], abs=1e-6
    )  # the evaluated epoch's own validation

    run_dir = tmp_path / "killed"
    first = Record()
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg_factory(*THREE, output_dir=run_dir), callbacks=[first, KillAtEpoch(2)])
    assert first.trained == [0, 1, 2]
    assert stored(run_dir / "checkpoints" / "last.ckpt") == (
        1,
        2 * STEPS_PER_EPOCH,
    )  # the newest epoch, not 0
    assert not (run_dir / "metrics.json").exists()

    second = Record()
    resumed = train(cfg_factory(*THREE, output_dir=run_dir), callbacks=[second])
    assert second.trained == [2]  # only the epoch the killed run had not finished
    assert resumed["eval/epoch"] == 2
    assert without_measurements(resumed) == without_measurements(metrics)


@pytest.mark.parametrize("lr, case", [(3e-3, "best before last"), (1e-2, "tied")])
def test_best_is_the_epoch_of_lowest_validation_loss(lr, case, cfg_factory, tmp_path):
    seen = Record()
    metrics = train(
        cfg_factory(
            *SATURATING,
            "eval.checkpoint=best",
            "data.n_val_per_class=50",
            f"optimizer.lr={lr}",
            output_dir=tmp_path / "run",
        ),
        callbacks=[seen],
    )
    losses = [seen.val[e][1] for e in sorted(seen.val)]
    expected = losses.index(min(losses))  # a tie keeps the earlier epoch
    assert all(acc == 1.0 for acc, _ in seen.val.values())  # accuracy ties in every epoch; the loss decides
    if case == "tied":  # the loss underflows to exactly 0 in every epoch: the first one is kept
        assert losses == [0.0] * 4 and expected == 0
    else:
        assert 0 < expected < 3  # neither the first nor the last epoch: choosing them would fail here
    assert metrics["eval/checkpoint"] == "best" and metrics["checkpoint"] == "checkpoints/best.ckpt"
    assert metrics["eval/epoch"] == expected
    assert stored(tmp_path / "run" / "checkpoints" / "best.ckpt")[0] == expected
    assert stored(tmp_path / "run" / "checkpoints" / "last.ckpt")[0] == 3
    assert metrics["val/loss"] == pytest.approx(min(losses), abs=1e-6)


def test_an_unknown_checkpoint_choice_is_refused(cfg_factory):
    from shapeshift.config.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.checkpoint must be last or best"):
        train(cfg_factory("debug=smoke", "logger=none", "eval.checkpoint=first"))


def test_a_checkpoint_loads_on_its_own_in_a_fresh_process(cfg_factory, tmp_path):
    """`Classifier.load_from_checkpoint(path)` with no run folder and no config: the backbone is rebuilt
    from the hyperparameters saved in the checkpoint, and gives the run's own outputs."""
    import json
    import shutil
    import subprocess
    import sys

    from shapeshift.engine.restore import load_model
    from tests.helpers import save_job_config

    run_dir = tmp_path / "run"
    cfg = cfg_factory("debug=smoke", "logger=none", "arch=resnet18", "data.image_size=40", output_dir=run_dir)
    train(cfg)
    save_job_config(cfg, run_dir)
    alone = tmp_path / "elsewhere" / "model.ckpt"
    alone.parent.mkdir()
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", alone)
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "checkpoints").mkdir()
    shutil.copy(alone, run_dir / "checkpoints" / "last.ckpt")

    torch.manual_seed(0)
    x = torch.randn(2, 3, 40, 40)
    torch.save(x, tmp_path / "x.pt")
    script = (
        "import json, sys, torch\n"
        "from shapeshift.models.classifier import Classifier\n"
        "m = Classifier.load_from_checkpoint(sys.argv[1], map_location='cpu').eval()\n"
        "with torch.no_grad():\n"
        "    y = m(torch.load(sys.argv[2]))\n"
        "print(json.dumps({'logits': y.tolist(), 'classes': list(m.class_names)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(alone), str(tmp_path / "x.pt")],
        cwd=tmp_path,  # not the repository: nothing but the file
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["classes"] == ["star", "moon"]
    expected = load_model(run_dir, cfg, ["iid"])
    with torch.no_grad():
        assert torch.allclose(torch.tensor(out["logits"]), expected(x), atol=1e-5)


def test_model_checkpoint_is_configured_from_the_callbacks_group(whole, cfg_factory, tmp_path):
    """`callbacks.model_checkpoint.every_n_epochs=2` saves every second epoch; the final epoch is saved
    whatever the schedule, so the run evaluates it and its results are the default schedule's."""
    _, _, every, default = whole  # the default schedule: every epoch
    assert every.seen == {0: None, 1: 0, 2: 1}

    second = LastSaved(tmp_path / "second")
    overrides = [*THREE, "callbacks.model_checkpoint.every_n_epochs=2"]
    sparse = train(cfg_factory(*overrides, output_dir=tmp_path / "second"), callbacks=[second])
    assert second.seen == {0: None, 1: None, 2: 1}  # after epoch 1 only, then the final epoch
    assert stored(tmp_path / "second" / "checkpoints" / "last.ckpt") == (2, 3 * STEPS_PER_EPOCH)
    assert (sparse["eval/epoch"], sparse["epochs"]) == (2, 3)
    # Where and how often last.ckpt is written is not a result: same metrics, same fingerprint.
    assert without_measurements(sparse) == without_measurements(default)


def test_early_stopping_between_two_saves_still_saves_the_final_epoch(cfg_factory, tmp_path):
    # lr 1e-2: the validation loss is 0.0 from the first epoch on, so patience 1 stops after epoch 1
    # (tests/test_config.py); every_n_epochs=3 would first save after epoch 2.
    metrics = train(
        cfg_factory(
            *SATURATING,
            "optimizer.lr=0.01",
            "callbacks=[early_stopping]",
            "callbacks.early_stopping.patience=1",
            "callbacks.model_checkpoint.every_n_epochs=3",
            output_dir=tmp_path / "run",
        )
    )
    assert (metrics["epochs"], metrics["eval/epoch"]) == (2, 1)
    assert stored(tmp_path / "run" / "checkpoints" / "last.ckpt") == (1, 2 * STEPS_PER_EPOCH)


def test_listing_callbacks_keeps_checkpointing(cfg_factory):
    checkpoints = {"model_checkpoint", "best_checkpoint"}
    assert set(cfg_factory().callbacks) == checkpoints
    assert set(cfg_factory("callbacks=[early_stopping]").callbacks) == {*checkpoints, "early_stopping"}
    # lightning-hydra-template's habit of naming the checkpoint option too changes nothing
    named = cfg_factory("callbacks=[model_checkpoint,early_stopping]")
    assert named.callbacks == cfg_factory("callbacks=[early_stopping]").callbacks
    assert named.callbacks.model_checkpoint.dirpath == f"{named.output_dir}/checkpoints"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["~callbacks.model_checkpoint"], "callbacks.model_checkpoint is missing: it writes"),
        (["callbacks.model_checkpoint.filename=newest"], "filename must be last, got newest"),
        (["callbacks.model_checkpoint.dirpath=/tmp/elsewhere"], "dirpath must be the run's checkpoints"),
        (["callbacks.model_checkpoint.monitor=val/acc"], "monitor must be null: last.ckpt holds the newest"),
        (["callbacks.model_checkpoint.save_top_k=0"], "save_top_k=0 saves no last.ckpt"),
        (["callbacks.model_checkpoint.save_weights_only=true"], "without the optimizer state"),
        (["callbacks.model_checkpoint.every_n_epochs=-1"], "every_n_epochs=-1. Must be >= 0"),
        (["trainer.enable_checkpointing=false"], "enable_checkpointing=false would leave no"),
        (["eval.checkpoint=best", "~callbacks.best_checkpoint"], "callbacks.best_checkpoint is missing"),
        (["eval.checkpoint=best", "callbacks.best_checkpoint.monitor=null"], "must monitor a metric"),
    ],
)
def test_settings_that_leave_no_checkpoint_to_read_are_refused_before_training(
    overrides, message, cfg_factory, tmp_path
):
    from shapeshift.config.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        train(cfg_factory("debug=smoke", "logger=none", *overrides))
    assert not (tmp_path / "run").exists()  # refused before the folder was claimed


def test_a_refused_checkpoint_setting_is_one_line(tmp_path, cache_dir):
    from tests.helpers import run_cli

    proc = run_cli(
        "train",
        ["debug=smoke", "callbacks.model_checkpoint.save_top_k=0", f"hydra.run.dir={tmp_path / 'run'}"],
        cache_dir,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "shapeshift: config error: callbacks.model_checkpoint.save_top_k=0 saves no last.ckpt; to save only "
        "the final epoch, set callbacks.model_checkpoint.every_n_epochs=0"
    ]
