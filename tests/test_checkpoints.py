"""Which weights a run evaluates, and where a killed run resumes, on a run whose validation accuracy
saturates in its first epoch: the case where "best accuracy" and a lazily written last.ckpt both mean
epoch 0."""

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from shapeshift.train import train
from tests.helpers import KillAtEpoch, without_measurements

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


def test_the_final_epoch_is_evaluated_and_a_killed_run_resumes_from_its_newest_epoch(cfg_factory, tmp_path):
    seen = Record()
    whole = train(cfg_factory(*SATURATING, output_dir=tmp_path / "whole"), callbacks=[seen])
    assert seen.val[0][0] == 1.0  # saturated in epoch 0: the failing case
    assert seen.trained == [0, 1, 2, 3]
    assert stored(tmp_path / "whole" / "checkpoints" / "last.ckpt") == (3, 4 * STEPS_PER_EPOCH)
    assert not (tmp_path / "whole" / "checkpoints" / "best.ckpt").exists()  # only written when evaluated
    assert (whole["eval/checkpoint"], whole["eval/epoch"], whole["eval/step"]) == (
        "last",
        3,
        4 * STEPS_PER_EPOCH,
    )
    assert whole["checkpoint"] == "checkpoints/last.ckpt" and whole["epochs"] == 4
    assert whole["val/loss"] == pytest.approx(
        seen.val[3][1], abs=1e-6
    )  # the evaluated epoch's own validation

    run_dir = tmp_path / "killed"
    first = Record()
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg_factory(*SATURATING, output_dir=run_dir), callbacks=[first, KillAtEpoch(2)])
    assert first.trained == [0, 1, 2]
    assert stored(run_dir / "checkpoints" / "last.ckpt") == (
        1,
        2 * STEPS_PER_EPOCH,
    )  # the newest epoch, not 0
    assert not (run_dir / "metrics.json").exists()

    second = Record()
    resumed = train(cfg_factory(*SATURATING, output_dir=run_dir), callbacks=[second])
    assert second.trained == [2, 3]  # only the epochs the killed run had not finished
    assert resumed["eval/epoch"] == 3
    assert without_measurements(resumed) == without_measurements(whole)


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
    from shapeshift.config import ConfigError

    with pytest.raises(ConfigError, match="eval.checkpoint must be last or best"):
        train(cfg_factory("debug=smoke", "logger=none", "eval.checkpoint=first"))


def test_a_checkpoint_loads_on_its_own_in_a_fresh_process(cfg_factory, tmp_path):
    """`Classifier.load_from_checkpoint(path)` with no run folder and no config: the backbone is rebuilt
    from the hyperparameters saved in the checkpoint, and gives the run's own outputs."""
    import json
    import shutil
    import subprocess
    import sys

    from shapeshift.restore import load_model
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
