"""Scale out on Hydra's launchers (joblib always; submitit from the optional extra '.[launchers]')."""

import json
import os

import pytest

from tests.helpers import run_cli, run_main


def shapeshift(args, cache_dir, timeout=600):
    return run_cli("train", args, cache_dir, timeout)


def finished(sweep):
    return sorted(json.loads(p.read_text())["arch"] for p in sweep.glob("*/metrics.json"))


def test_joblib_runs_two_jobs_side_by_side_without_oversubscribing(cache_dir, tmp_path):
    proc = shapeshift(
        [
            "-m",
            "hydra/launcher=side_by_side",
            "arch=cnn",
            "aug=none,basic",
            "debug=smoke",
            "logger=none",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cache_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = [json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")]
    assert sorted((m["arch"], m["aug"]) for m in jobs) == [("cnn", "basic"), ("cnn", "none")]
    cores = os.cpu_count() or 1
    for metrics in tmp_path.glob("*/metrics.json"):
        assert json.loads(metrics.read_text())["torch_threads"] == max(1, cores // min(2, cores))


def test_submitit_local_end_to_end(cache_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = shapeshift(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=10",
            "arch=cnn",
            "debug=smoke",
            "logger=none",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cache_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert finished(tmp_path) == ["cnn"]
    assert (tmp_path / ".submitit").is_dir()
    assert json.loads(next(tmp_path.glob("*/metrics.json")).read_text())["torch_threads"] == 1


def launcher_config(args, cache_dir) -> dict:
    """The `hydra.launcher` node a sweep with these arguments would hand to its launcher, resolved
    (composed in this process, as `--cfg hydra --package hydra.launcher --resolve` prints it)."""
    from omegaconf import OmegaConf

    from tests.helpers import compose_train

    return OmegaConf.to_container(compose_train(args).hydra.launcher, resolve=True)


def test_slurm_preset_requeues_and_gives_each_task_a_gpu(cache_dir):
    conf = launcher_config(["hydra/launcher=slurm", "hydra.launcher.partition=a100"], cache_dir)
    assert conf["_target_"].endswith("SlurmLauncher") and conf["partition"] == "a100"
    assert conf["max_num_timeout"] > 0  # a job at its time limit is requeued; train() resumes from last.ckpt
    assert (conf["tasks_per_node"], conf["gpus_per_node"]) == (1, 1)
    # One GPU per task follows the task count: Lightning refuses devices != SLURM tasks per node.
    ddp = launcher_config(
        ["hydra/launcher=slurm", "hydra.launcher.tasks_per_node=4", "trainer=ddp"], cache_dir
    )
    assert (ddp["tasks_per_node"], ddp["gpus_per_node"]) == (4, 4)


def test_gpu_presets_make_the_gpu_visible(cache_dir):
    local = launcher_config(["hydra/launcher=local_gpu"], cache_dir)
    # The plugin's submitit_local sets CUDA_VISIBLE_DEVICES to gpus_per_node GPUs: 0 would hide them all.
    assert local["_target_"].endswith("LocalLauncher") and local["gpus_per_node"] == 1
    shared = launcher_config(["hydra/launcher=gpu_side_by_side"], cache_dir)
    assert shared["_target_"].endswith("JoblibLauncher") and shared["n_jobs"] > 1


def test_a_job_that_sees_no_gpu_says_so(cfg_factory, monkeypatch, caplog):
    from shapeshift.train import resolve_hardware_choices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cfg = cfg_factory("trainer.accelerator=auto")
    with caplog.at_level("WARNING", logger="shapeshift"):
        resolve_hardware_choices(cfg)
    assert "no GPU is visible" in caplog.text and "local_gpu" in caplog.text
    assert cfg.trainer.deterministic is True  # resolved for the CPU it will run on


def test_unknown_launcher_names_the_choices(tmp_path):
    proc = run_main("train", ["-m", "hydra/launcher=mpi", "debug=smoke", f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode != 0
    assert "hydra/launcher/mpi" in proc.stderr and "joblib" in proc.stderr and "slurm" in proc.stderr
