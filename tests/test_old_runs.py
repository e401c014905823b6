"""A run folder written before the modules moved into layer folders (commit 3680721) keeps working: its
config, fingerprint, checkpoint and detectors load with today's code.

The folder in tests/data was made with that commit's
`python -m shapeshift.train debug=smoke arch.widths=[4,8,8] data.image_size=32`.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from shapeshift.models.classifier import Classifier
from tests.helpers import run_cli

OLD_RUN = Path(__file__).parent / "data" / "run_before_folders"
OVERRIDES = ["debug=smoke", "arch.widths=[4,8,8]", "data.image_size=32"]
# The old run's `trainer.precision=auto` resolved to 32-true where it was made (run.json records it); on a
# CPU with native bf16 auto resolves to bf16, a different computation, which the fingerprint rightly tells
# apart. The command pins what the run computed in, so the test holds on either kind of machine.
SAME_PRECISION = "trainer.precision=32-true"


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    return run


def test_the_same_command_skips_the_old_run_as_finished(old_run, tmp_path):
    before = (old_run / "metrics.json").read_text()
    command = [*OVERRIDES, SAME_PRECISION, f"hydra.run.dir={old_run}"]
    done = run_cli("train", command, cache_dir=tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is finished" in done.stderr + done.stdout  # the fingerprint matched: nothing retrained
    assert (old_run / "metrics.json").read_text() == before
    assert not (old_run / "checkpoints" / "epoch=000.ckpt").exists()


def test_evaluate_rebuilds_the_old_run_and_measures_what_it_measured(old_run, tmp_path):
    done = run_cli("evaluate", [f"run={old_run}", "accelerator=cpu"], cache_dir=tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-2000:]
    trained = json.loads((old_run / "metrics.json").read_text())
    evaluated = json.loads((old_run / "evaluation.json").read_text())
    # The same weights on the same i.i.d. test images and today's catalog at the run's sizes.
    for key in ("test/iid/acc", "test/iid/ece", "test/ood/acc", "test/position/s5/acc"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_the_old_checkpoint_loads_alone():
    model = Classifier.load_from_checkpoint(OLD_RUN / "checkpoints" / "last.ckpt", map_location="cpu")
    assert model.class_names == ("star", "moon")
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
