import json
import os

import pytest

from shapeshift.train import train
from tests.helpers import assert_metrics_consistent, wandb_records

SMALL = ["debug=smoke", "logger=csv"]


def test_train_writes_metrics_json_and_a_checkpoint(cfg_factory, tmp_path):
    cfg = cfg_factory(*SMALL, "arch=cnn", "seed=1")
    metrics = train(cfg)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk == metrics
    assert (on_disk["arch"], on_disk["aug"], on_disk["seed"]) == ("cnn", "none", 1)
    # debug=smoke: 16 i.i.d. test images per class, 8 per class in each o.o.d. set, 16 in mix.
    assert_metrics_consistent(on_disk, {"iid": 32, "position/s5": 16, "rotation/s3": 16, "mix": 32})
    assert (tmp_path / "run" / on_disk["checkpoint"]).is_file()
    assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()


@pytest.mark.parametrize("trainer", ["default", "cpu_bf16"])
def test_the_strided_cnn_learns_the_shortcut(trainer, cfg_factory):
    """The study's first finding in miniature: perfect on i.i.d. data, lost in the opposite quadrants.
    The bf16 autocast preset must learn it as fp32 does."""
    cfg = cfg_factory(*SMALL, "arch=cnn", f"trainer={trainer}", "data.image_size=32", "data.n_train_per_class=300",
                      "data.n_val_per_class=50", "data.n_test_per_class=100", "shift.n_per_class=100",
                      "trainer.max_epochs=4", "trainer.limit_train_batches=null")
    metrics = train(cfg)
    assert metrics["test/iid/acc"] >= 0.95
    assert metrics["test/position/s5/acc"] <= 0.3
    assert metrics["test/ood_iid_ratio"] == pytest.approx(metrics["test/ood/acc"] / metrics["test/iid/acc"], abs=1e-5)


def test_same_seed_same_metrics(cfg_factory, tmp_path):
    a = train(cfg_factory(*SMALL, "arch=maxpool", "aug=basic", output_dir=tmp_path / "a"))
    b = train(cfg_factory(*SMALL, "arch=maxpool", "aug=basic", output_dir=tmp_path / "b"))
    strip = lambda m: {k: v for k, v in m.items() if not k.startswith("time/")}  # noqa: E731
    assert strip(a) == strip(b)


def test_offline_wandb_run_writes_its_folder(cfg_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = cfg_factory("debug=smoke", "logger=wandb", "arch=cnn")
    train(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (run_file,) = runs[0].glob("*.wandb")
    records = list(wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert run.job_type == "train"  # the dashboard can group by choice names and filter by job type
    assert config["choices"] == {"arch": "cnn", "aug": "none", "cell": "cnn-none", "seed": 0}
    summary = {u.key: json.loads(u.value_json) for r in records if r.WhichOneof("record_type") == "summary"
               for u in r.summary.update}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["test/iid/acc"] == metrics["test/iid/acc"]
    history_keys = {i.key for r in records if r.WhichOneof("record_type") == "history" for i in r.history.item}
    assert not any(k.startswith("test/") for k in history_keys)  # test metrics once: summary, not history
    # Accuracy-vs-severity charts and example images with predictions travel with the run.
    media = runs[0] / "files" / "media"
    assert len(list((media / "images" / "examples" / "position").glob("s5_*.png"))) == 4
    assert list((media / "table" / "severity").glob("rotation_table_*.table.json"))
    import wandb

    assert wandb.run is None  # finished, so a next job cannot log into this run
    assert os.environ["WANDB_MODE"] == "offline"


def test_a_resumed_run_continues_its_wandb_run(cfg_factory, tmp_path, monkeypatch):
    from tests.test_reliability import KillAfterFirstEpoch

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    overrides = ("debug=smoke", "logger=wandb", "arch=cnn", "trainer.max_epochs=2")
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg_factory(*overrides), callbacks=[KillAfterFirstEpoch()])
    metrics = train(cfg_factory(*overrides))
    runs = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # one folder per process; `wandb sync` uploads both into the one run id
    assert {p.name.rsplit("-", 1)[-1] for p in runs} == {metrics["wandb/run_id"]}
    assert len(metrics["wandb/run_id"]) == 8
