"""One run = one result on several processes: DDP over gloo on two CPU processes (as on two GPUs), a
multirun of DDP jobs, and a SLURM job's tasks simulated with the environment SLURM gives them."""

import json
import os
import socket
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from shapeshift.engine.runtime import choose_deterministic
from shapeshift.evaluate import evaluate_run
from tests.helpers import ROOT, run_cli

DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.precision=32-true"]
SMOKE = ["debug=smoke", "arch=cnn", "trainer.max_epochs=2"]
ONE_PASS = ("test/", "eval/", "val/")  # what rank 0's one-device evaluation must reproduce


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def ddp_sweep(cache_dir, tmp_path_factory) -> tuple:
    """A multirun of two DDP jobs (SMOKE, then SMOKE with aug=basic), each on two CPU processes with an
    offline W&B run in its folder, once for this module: the sweep folder, the stray run dir and the
    finished process."""
    root = tmp_path_factory.mktemp("ddp")
    sweep, stray = root / "sweep", root / "stray"
    proc = run_cli(
        "train",
        [
            "-m",
            *SMOKE,
            "aug=none,basic",
            *DDP,
            "logger=wandb",
            f"hydra.sweep.dir={sweep}",
            f"hydra.run.dir={stray}",
        ],
        cache_dir,
        timeout=300,
        WANDB_MODE="offline",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep, stray, proc


@pytest.fixture(scope="module")
def ddp_run(ddp_sweep):
    """The sweep's first job: SMOKE trained by DDP on two processes."""
    (run_dir,) = ddp_sweep[0].glob("0_arch=cnn*")
    return run_dir


def test_a_ddp_run_with_wandb_is_one_run_with_one_result(ddp_sweep, ddp_run):
    proc, run_dir = ddp_sweep[-1], ddp_run
    m = metrics(run_dir)
    assert (m["devices"], m["accelerator"], m["epochs"]) == (2, "cpu", 2)
    assert not (run_dir / "error.txt").exists()
    assert (run_dir / "qc.pt").is_file()
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # rank 1 started no W&B run of its own
    assert runs[0].name.endswith(m["wandb/run_id"])
    assert json.loads((run_dir / "run.json").read_text())["wandb_id"] == m["wandb/run_id"]
    assert "sync_dist" not in proc.stderr  # evaluation ran after the process group was gone

    # Rank 0 evaluated on one device, every image once: the same weights tested afresh in this process
    # (one device, no process group) give the same numbers.
    again = evaluate_run(
        run_dir,
        OmegaConf.create(OmegaConf.load(run_dir / ".hydra" / "config.yaml").shift),
        None,
        out="one_device.json",
        accelerator="cpu",
    )
    tested = {k: v for k, v in m.items() if k.startswith("test/")}
    assert tested and {k: again[k] for k in tested} == tested


def test_ddp_splits_the_batch_so_two_processes_train_as_one(ddp_run, cfg_factory):
    """`data.batch_size` is the batch of one optimizer step: two processes with half each take the same
    steps as one process with all of it (no batch norm in this arch, fp32: the same weights). The two
    processes are the module's DDP run: its logger and quality control do not change what it trains. The
    one process is DDP on one device (its sampler's order), trained here by `train()`, which leaves no
    process group behind."""
    import torch.distributed as dist

    from shapeshift.train import train

    a = train(cfg_factory(*SMOKE, *DDP, "trainer.devices=1", "logger=none"))
    assert not dist.is_initialized()
    b = metrics(ddp_run)
    assert (a["devices"], b["devices"]) == (1, 2)
    assert a["eval/step"] == b["eval/step"] == 4  # 64 images, batch 32, 2 epochs
    assert b["val/loss"] == pytest.approx(a["val/loss"], abs=1e-4)
    assert b["test/ood/acc"] == pytest.approx(a["test/ood/acc"], abs=0.02)


def test_a_multirun_of_ddp_jobs_gives_one_result_per_job(ddp_sweep):
    sweep, stray, _ = ddp_sweep
    jobs = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    assert [j.split(",debug")[0] for j in jobs] == ["0_arch=cnn,aug=none", "1_arch=cnn,aug=basic"]
    assert not stray.exists()  # no rank started a run or a sweep of its own
    ids = set()
    for job in sweep.glob("*_arch=*"):
        assert metrics(job)["devices"] == 2
        aug = job.name.split("aug=")[1].split(",")[0]
        assert metrics(job)["aug"] == aug  # each rank ran its own job's config
        assert (job / "train_ddp_process_1.log").is_file()  # rank 1 ran this job, in this folder
        ids.add(metrics(job)["wandb/run_id"])
    assert len(ids) == 2  # each job its own W&B run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_slurm_job_with_two_tasks_trains_on_both_and_writes_once(cache_dir, tmp_path):
    """What `hydra/launcher=slurm hydra.launcher.tasks_per_node=2 trainer=ddp` gives each task: SLURM
    starts both processes with their SLURM_PROCID; Lightning joins them and rank 0 writes the run."""
    run_dir = tmp_path / "slurm"
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "shapeshift",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "127.0.0.1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    env = {**os.environ, "WANDB_MODE": "disabled", "SHAPESHIFT_CACHE": str(cache_dir), **slurm}
    args = [
        sys.executable,
        "-m",
        "shapeshift.train",
        *SMOKE,
        *DDP,
        "logger=none",
        "qc.detectors=[msp]",
        "qc.gate=msp",
        f"hydra.run.dir={run_dir}",
    ]
    procs = [
        subprocess.Popen(
            args,
            cwd=ROOT,
            env={**env, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    m = metrics(run_dir)
    assert (m["devices"], m["epochs"]) == (2, 2)
    rank0, rank1 = ("".join(out) for out in outputs)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in rank1  # rank 1 took part in training
    assert "results:" in rank0 and "results:" not in rank1  # and rank 0 alone evaluated and reported


@pytest.mark.slow
def test_ddp_spawn_records_the_epochs_it_trained(cache_dir, tmp_path):
    """`ddp_spawn` trains in child processes: this process's Trainer never runs an epoch itself."""
    proc = run_cli(
        "train",
        [
            *SMOKE,
            *DDP,
            "trainer.strategy=ddp_spawn",
            "logger=none",
            "qc.detectors=[msp]",
            "qc.gate=msp",
            f"hydra.run.dir={tmp_path}",
        ],
        cache_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (metrics(tmp_path)["epochs"], metrics(tmp_path)["devices"]) == (2, 2)


def test_deterministic_auto_is_true_on_the_cpu_and_warn_on_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_deterministic("auto", "auto")[0] is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # torch has no deterministic CUDA backward for reflection padding (antialiased-cnns): True would raise.
    assert choose_deterministic("auto", "auto")[0] == "warn"
    assert choose_deterministic("auto", "gpu")[0] == "warn"
    assert choose_deterministic("auto", "cpu")[0] is True
    assert choose_deterministic(True, "gpu")[0] is True  # an explicit choice is kept
