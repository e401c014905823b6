import json
import re

import numpy as np
import pytest

from shapeshift.runs.provenance import code_commit
from shapeshift.train import train
from tests.helpers import KillAtEpoch, assert_metrics_consistent, run_cli, without_measurements

SMALL = ["debug=smoke", "logger=csv"]


def test_train_writes_metrics_json_and_a_checkpoint(cfg_factory, tmp_path):
    cfg = cfg_factory(*SMALL, "arch=cnn", "seed=1")
    metrics = train(cfg)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk == metrics
    assert (on_disk["arch"], on_disk["aug"], on_disk["seed"]) == ("cnn", "none", 1)
    # Which code and arithmetic computed it: the checkout's commit, the precision `auto` resolved to.
    assert on_disk["commit"] == code_commit() and on_disk["precision"] in {"32-true", "bf16-mixed"}
    # debug=smoke: 16 i.i.d. test images per class, 8 per class in each o.o.d. set, 16 in mix.
    assert_metrics_consistent(on_disk, {"iid": 32, "position/s5": 16, "rotation/s3": 16, "mix": 32})
    assert (tmp_path / "run" / on_disk["checkpoint"]).is_file()
    assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()


@pytest.mark.parametrize("trainer", ["default", "cpu_bf16"])
def test_the_strided_cnn_learns_the_shortcut(trainer, cfg_factory):
    """The study's first finding in miniature: perfect on i.i.d. data, lost in the opposite quadrants.
    The bf16 autocast preset must learn it as fp32 does."""
    cfg = cfg_factory(
        *SMALL,
        "arch=cnn",
        f"trainer={trainer}",
        "data.image_size=32",
        "data.n_train_per_class=200",  # the training and validation images test_checkpoints.py renders
        "data.n_val_per_class=50",
        "data.n_test_per_class=50",  # 100 test images, 50 in each o.o.d. set: plenty for 0.95 and 0.3
        "shift.n_per_class=25",
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=null",
    )
    metrics = train(cfg)
    assert metrics["test/iid/acc"] >= 0.95
    assert metrics["test/position/s5/acc"] <= 0.3
    assert metrics["test/ood_iid_ratio"] == pytest.approx(
        metrics["test/ood/acc"] / metrics["test/iid/acc"], abs=1e-5
    )


def test_same_seed_same_metrics(cfg_factory, tmp_path):
    a = train(cfg_factory(*SMALL, "arch=maxpool", "aug=basic", output_dir=tmp_path / "a"))
    b = train(cfg_factory(*SMALL, "arch=maxpool", "aug=basic", output_dir=tmp_path / "b"))
    assert without_measurements(a) == without_measurements(b)


def test_a_resumed_run_continues_its_wandb_run(cfg_factory, tmp_path, monkeypatch):

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    overrides = ("debug=smoke", "logger=wandb", "arch=cnn", "trainer.max_epochs=2")
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg_factory(*overrides), callbacks=[KillAtEpoch(1)])
    metrics = train(cfg_factory(*overrides))
    runs = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # one folder per process; `wandb sync` uploads both into the one run id
    # offline-run-<date>_<time>-<id>, and "-1" appended when both start in the same second
    assert {re.match(r"offline-run-\d{8}_\d{6}-([a-z0-9]+)", p.name)[1] for p in runs} == {
        metrics["wandb/run_id"]
    }
    assert len(metrics["wandb/run_id"]) == 8


def test_the_examples_are_the_most_confidently_wrong():
    from shapeshift.tracking.wandb_catalog import confidently_wrong

    predicted, labels = np.array([0, 1, 1, 0, 1, 0]), np.array([0, 0, 0, 0, 1, 1])
    confidence = np.array([0.99, 0.7, 0.95, 0.6, 0.8, 0.9])
    # Wrong: 1 (0.7), 2 (0.95), 5 (0.9) by confidence; then the least confident right ones: 3 (0.6), 4 (0.8).
    assert confidently_wrong(predicted, confidence, labels, 4).tolist() == [2, 5, 1, 3]


def test_lightnings_fast_dev_run_from_the_command_line_runs_and_saves_nothing(
    cfg_factory, tmp_path, cache_dir
):
    """As a user types it: exit 0, one batch of each stage, and the folder holds no result, no record
    (run.json) and no error. Its metrics describe one batch, so there is nothing for a sweeper either."""
    run_dir = tmp_path / "run"
    args = ["debug=smoke", "logger=none", "trainer.fast_dev_run=true", f"hydra.run.dir={run_dir}"]
    done = run_cli("train", args, cache_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    said = done.stdout + done.stderr
    assert "one batch of each stage ran; nothing was saved" in said and "test/iid/acc" in said
    saved = ("metrics.json", "run.json", "error.txt", "qc.pt", "risk_coverage.json", "checkpoints")
    assert not any((run_dir / name).exists() for name in saved)
    # Nothing to protect: the same folder then takes a real run.
    assert train(cfg_factory("debug=smoke", "logger=none", output_dir=run_dir))["epochs"] == 1


def test_a_sweeper_optimizes_a_validation_metric_by_default(cfg_factory):
    from shapeshift.config.errors import ConfigError
    from shapeshift.train import objective

    cfg = cfg_factory("debug=smoke")
    metrics = {"val/loss": 0.25, "val/acc": 0.9, "test/ood/acc": 0.7}
    assert objective(metrics, cfg.optimized_metric) == 0.25  # the default: val/loss, never a test set
    assert objective(metrics, "test/ood/acc") == 0.7  # any metrics.json key, if the user asks
    with pytest.raises(ConfigError, match="did you mean val/acc"):
        objective(metrics, "val/accuracy")
