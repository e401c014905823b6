"""`ckpt_path`: a run started from another run's checkpoint file, resumed (its whole training state) or
fine-tuned (its weights, a fresh optimizer); a file that cannot be used fails in one line before training."""

import json
import re
import shutil

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from shapeshift.config.errors import ConfigError
from shapeshift.train import train
from tests.helpers import LIGHT_QC, KillAtEpoch, make_cfg, without_measurements

SMALL = ["debug=smoke", "logger=none", "arch=cnn", "data.image_size=32"]
STEPS = 2  # per epoch: smoke's 2 x 32 training images in batches of 32


@pytest.fixture(scope="module")
def source(tmp_path_factory, cache_dir) -> tuple:
    """A finished 2-epoch run (the file to start from, and its bytes), and the same config trained 4 epochs
    from scratch, both trained once for this module."""
    root = tmp_path_factory.mktemp("start_from")
    train(make_cfg([*LIGHT_QC, *SMALL, "trainer.max_epochs=2"], root / "source", cache_dir))
    whole = train(make_cfg([*LIGHT_QC, *SMALL, "trainer.max_epochs=4"], root / "whole", cache_dir))
    ckpt = root / "source" / "checkpoints" / "last.ckpt"
    return ckpt, ckpt.read_bytes(), whole


class Start(Callback):
    """The epochs a fit trains, and the state it starts from: one weight and the optimizer's step count."""

    def __init__(self):
        self.trained, self.weight, self.optimizer_steps = [], None, None

    def on_train_start(self, trainer, pl_module):
        self.weight = pl_module.state_dict()["backbone.features.0.weight"].clone()
        state = trainer.optimizers[0].state
        self.optimizer_steps = [float(s["step"]) for s in state.values()][:1] or [0.0]

    def on_train_epoch_start(self, trainer, pl_module):
        self.trained.append(trainer.current_epoch)


def stored(path) -> tuple[int, int]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt["epoch"], ckpt["global_step"]


def test_resume_continues_the_files_training_up_to_max_epochs(source, cfg_factory, tmp_path):
    ckpt, before, whole = source
    seen = Start()
    run = tmp_path / "resumed"
    resumed = train(cfg_factory(*SMALL, "trainer.max_epochs=4", f"ckpt_path={ckpt}", output_dir=run), [seen])
    assert seen.trained == [2, 3]  # the file's two epochs are not trained again
    assert seen.optimizer_steps == [2.0 * STEPS]  # Adam's state came with it
    assert stored(run / "checkpoints" / "last.ckpt") == (3, 4 * STEPS)
    assert (resumed["epochs"], resumed["eval/epoch"]) == (4, 3)
    # The file's 2 epochs and 2 more are the 4-epoch run from scratch, number for number...
    same = lambda m: {k: v for k, v in without_measurements(m).items() if k != "fingerprint"}  # noqa: E731
    assert same(resumed) == same(whole)
    # ...but not the same run: the file is part of the fingerprint. And the file is only read.
    keys = json.loads((run / "run.json").read_text())["keys"]
    assert keys["ckpt_mode"] == "resume" and keys["ckpt_path"].startswith("sha256:")
    assert resumed["fingerprint"] != whole["fingerprint"]
    assert ckpt.read_bytes() == before


def test_finetune_starts_from_the_files_weights_with_a_fresh_optimizer(source, cfg_factory, tmp_path):
    ckpt, before, _ = source
    seen = Start()
    run = tmp_path / "tuned"
    overrides = [*SMALL, "trainer.max_epochs=2", f"ckpt_path={ckpt}", "ckpt_mode=finetune"]
    tuned = train(cfg_factory(*overrides, "optimizer.lr=1e-4", output_dir=run), [seen])
    assert seen.trained == [0, 1]  # max_epochs epochs of its own
    assert seen.optimizer_steps == [0.0]  # a fresh optimizer
    weights = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(seen.weight, weights["backbone.features.0.weight"])  # the file's weights
    assert stored(run / "checkpoints" / "last.ckpt") == (1, 2 * STEPS)
    assert (tuned["epochs"], tuned["eval/epoch"]) == (2, 1)
    assert json.loads((run / "run.json").read_text())["keys"]["ckpt_mode"] == "finetune"
    assert ckpt.read_bytes() == before

    # Interrupted, it resumes from its own last.ckpt, not from the file again.
    killed = tmp_path / "killed"
    overrides = [*overrides, "trainer.max_epochs=3"]
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg_factory(*overrides, output_dir=killed), [KillAtEpoch(2)])
    again = Start()
    train(cfg_factory(*overrides, output_dir=killed), [again])
    assert again.trained == [2] and again.optimizer_steps == [2.0 * STEPS]


def broken(source_ckpt, path, change) -> str:
    """A copy of the source checkpoint with `change(checkpoint)` applied."""
    checkpoint = torch.load(source_ckpt, map_location="cpu", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)
    return str(path)


def three_classes(checkpoint):
    head = checkpoint["state_dict"]["backbone.head.1.weight"]
    checkpoint["state_dict"]["backbone.head.1.weight"] = torch.zeros(3, head.shape[1])
    checkpoint["state_dict"]["backbone.head.1.bias"] = torch.zeros(3)
    checkpoint["hyper_parameters"]["num_classes"] = 3


@pytest.mark.parametrize(
    "make, overrides, message",
    [
        (lambda s, d: str(d / "missing.ckpt"), [], "missing.ckpt: no such file"),
        (lambda s, d: (d / "x.ckpt").write_bytes(b"not a checkpoint") and str(d / "x.ckpt"), [], "readable"),
        (lambda s, d: str(s), ["arch=maxpool"], "not a shapeshift.models.cnn.MaxPoolCNN"),
        (lambda s, d: str(s), ["arch=gap", "ckpt_mode=finetune"], "does not fit arch=gap with 2 classes"),
        (
            lambda s, d: broken(s, d / "3.ckpt", three_classes),
            [],
            "it holds 3 classes; backbone.head.1.weight",
        ),
        (lambda s, d: broken(s, d / "w.ckpt", lambda c: c.pop("optimizer_states")), [], "holds weights only"),
        (lambda s, d: str(s), ["trainer.max_epochs=2"], "has trained 2 epochs: trainer.max_epochs=2 leaves"),
        (lambda s, d: str(s), ["ckpt_mode=warm"], "ckpt_mode must be resume or finetune, got 'warm'"),
    ],
)
def test_a_file_that_cannot_be_used_fails_in_one_line_before_training(
    make, overrides, message, source, cfg_factory, tmp_path
):
    path = make(source[0], tmp_path)
    cfg = cfg_factory(*SMALL, "trainer.max_epochs=4", f"ckpt_path={path}", *overrides)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        train(cfg)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_the_fingerprint_follows_the_files_content_not_its_path(source, cfg_factory, tmp_path):
    from shapeshift.runs.fingerprint import fingerprint_keys

    ckpt = source[0]
    moved = tmp_path / "moved.ckpt"
    shutil.copy(ckpt, moved)
    keys = lambda *o: fingerprint_keys(cfg_factory(*SMALL, *o))  # noqa: E731
    assert "ckpt_path" not in keys() and "ckpt_mode" not in keys()  # from scratch: as it always was
    assert keys(f"ckpt_path={ckpt}") == keys(f"ckpt_path={moved}")
    assert keys(f"ckpt_path={ckpt}") != keys(f"ckpt_path={ckpt}", "ckpt_mode=finetune")
    moved.write_bytes(moved.read_bytes() + b"\0")  # another file at the same path: another start
    assert keys(f"ckpt_path={ckpt}")["ckpt_path"] != keys(f"ckpt_path={moved}")["ckpt_path"]


def test_a_missing_file_is_one_line_on_the_command_line(cfg_factory, tmp_path, capsys):
    """As `main` runs `train` (the same one-line wiring in a subprocess: test_checkpoints.py's
    test_a_refused_checkpoint_setting_is_one_line)."""
    from shapeshift.console.errors import command_errors

    missing = tmp_path / "nowhere" / "last.ckpt"
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_, command_errors():
        train(cfg_factory("debug=smoke", f"ckpt_path={missing}", output_dir=run_dir))
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"shapeshift: config error: ckpt_path={missing}: no such file"
    ]
