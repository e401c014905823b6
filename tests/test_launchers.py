"""Scale out on Hydra's launchers (joblib always; submitit from the optional extra '.[launchers]')."""

import json
import os

import pytest

from tests.helpers import run_cli


def shapeshift(args, cache_dir, timeout=600):
    return run_cli("train", args, cache_dir, timeout)


def finished(sweep):
    return sorted(json.loads(p.read_text())["arch"] for p in sweep.glob("*/metrics.json"))


def test_joblib_runs_two_jobs_side_by_side_without_oversubscribing(cache_dir, tmp_path):
    proc = shapeshift(["-m", "hydra/launcher=side_by_side", "arch=cnn,maxpool",
                       "debug=smoke", "logger=none", f"hydra.sweep.dir={tmp_path}"], cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert finished(tmp_path) == ["cnn", "maxpool"]
    cores = os.cpu_count() or 1
    for metrics in tmp_path.glob("*/metrics.json"):
        assert json.loads(metrics.read_text())["torch_threads"] == max(1, cores // min(2, cores))


def test_submitit_local_end_to_end(cache_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = shapeshift(["-m", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1",
                       "hydra.launcher.timeout_min=10", "arch=cnn", "debug=smoke", "logger=none",
                       f"hydra.sweep.dir={tmp_path}"], cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert finished(tmp_path) == ["cnn"]
    assert (tmp_path / ".submitit").is_dir()
    assert json.loads(next(tmp_path.glob("*/metrics.json")).read_text())["torch_threads"] == 1


def test_slurm_preset_composes(cache_dir):
    proc = shapeshift(["hydra/launcher=slurm", "trainer=gpu", "hydra.launcher.partition=a100", "--cfg", "hydra",
                       "--package", "hydra.launcher"], cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "SlurmLauncher" in out and "partition: a100" in out and "gpus_per_node: 1" in out


def test_unknown_launcher_names_the_choices(cache_dir, tmp_path):
    proc = shapeshift(["-m", "hydra/launcher=mpi", "debug=smoke", f"hydra.sweep.dir={tmp_path}"], cache_dir)
    assert proc.returncode != 0
    assert "hydra/launcher/mpi" in proc.stderr and "joblib" in proc.stderr and "slurm" in proc.stderr


@pytest.mark.slow
def test_ddp_preset_trains_on_two_cpu_processes_and_tests_on_one(cache_dir, tmp_path):
    """`trainer=ddp` (ddp_spawn) under Hydra: no re-launch of the command, one run dir, all images counted."""
    proc = shapeshift(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                       "trainer.deterministic=true", "debug=smoke", "logger=none", "data.num_workers=0",
                       f"hydra.run.dir={tmp_path}"], cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 <= metrics["test/iid/acc"] <= 1
    assert [p.name for p in tmp_path.parent.iterdir() if p.name.startswith(tmp_path.name)] == [tmp_path.name]
