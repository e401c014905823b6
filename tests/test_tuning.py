"""`hparams_search=optuna`: a tuning run of two trials in smoke mode, Optuna minimizing `optimized_metric`."""

import importlib.util

import pytest
import yaml

from shapeshift.runs.folder import find_runs, read_metrics
from tests.helpers import run_cli

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="the `tune` extra (hydra-optuna-sweeper) is not installed; make install installs it",
)


def test_two_optuna_trials_minimize_the_validation_loss(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    args = ["hparams_search=optuna", "debug=smoke", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"]
    done = run_cli("train", args, cache_dir)  # no -m: the preset sets Hydra's multirun mode
    assert done.returncode == 0, done.stderr[-2000:]
    runs = find_runs(sweep)
    assert len(runs) == 2 and all("hparams_search" not in r.name for r in runs)
    losses = {r: read_metrics(r)["val/loss"] for r in runs}
    best = min(losses, key=losses.get)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(losses[best], abs=1e-6)  # val/loss, not a test metric
    saved = yaml.safe_load((best / ".hydra" / "config.yaml").read_text())
    assert result["best_params"]["optimizer.lr"] == pytest.approx(saved["optimizer"]["lr"])
    assert result["best_params"]["data.batch_size"] == saved["data"]["batch_size"]
