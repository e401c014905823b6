"""One run over several processes (DDP, a SLURM job with one task per GPU): every process trains, and the
first one alone owns the run folder, logs, evaluates and writes the result.

How the processes come to be differs, and each way reaches `train()` differently:
- `strategy=ddp` on one machine: Lightning starts the other ranks inside `trainer.fit` by running the
  command line again (`ddp_launch_scope` makes that line this one job);
- a SLURM job with `tasks_per_node` > 1: SLURM starts every rank, and each runs the whole job;
- `strategy=ddp_spawn`: the ranks exist only inside `trainer.fit`; `train()` runs once.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, read_write


def is_lead() -> bool:
    """True in the process that owns the run folder: global rank 0. Lightning reads the rank from the
    environment a launcher sets (RANK, LOCAL_RANK, SLURM_PROCID) when it is imported."""
    return getattr(rank_zero_only, "rank", 0) == 0


@contextlib.contextmanager
def ddp_launch_scope(out: Path) -> Iterator[None]:
    """Around `trainer.fit`: the processes Lightning's `ddp` starts run this one job, in this folder, and
    what it leaves behind does not reach the next job of a multirun.

    Lightning re-runs `sys.argv` with `hydra.run.dir=<HydraConfig run.dir>` appended. In a multirun, that
    line is the whole sweep (`-m arch=cnn,gap`) and run.dir is not the job's folder: each child started a
    sweep of its own. The job's own overrides and folder are what they must run. The launcher also sets
    LOCAL_RANK, WORLD_SIZE and MASTER_PORT in this process: left there, the next job reads them as
    "SLURM or torchrun started my ranks", starts none, and waits for them forever.
    """
    environ = dict(os.environ)
    argv = sys.argv
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    run_dir = hydra.run.dir if hydra else None
    if hydra:
        sys.argv = [argv[0], *hydra.overrides.task]
        with read_write(hydra.run):
            hydra.run.dir = str(out)
    try:
        yield
    finally:
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environ)
        if hydra:
            with read_write(hydra.run):
                hydra.run.dir = run_dir


def leave_process_group() -> None:
    """End the training's process group on every rank, once all have finished (the last checkpoint is
    written). Evaluation then runs in rank 0 alone: with the group alive, every torchmetrics `compute`
    would wait for the other ranks to contribute."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def evaluation_trainer(trainer: L.Trainer, cfg: DictConfig, callbacks: list) -> L.Trainer:
    """The training's Trainer where it ran on one device without a process group; else the configured
    Trainer on one device of the same kind, so every evaluation set is tested whole, never split or padded
    by a distributed sampler, and no process group outlives `train()` (a DDP strategy joins one even on a
    single device). The local cluster environment keeps a SLURM job's task count out of it."""
    if trainer.world_size == 1 and not isinstance(trainer.strategy, L.pytorch.strategies.ParallelStrategy):
        return trainer
    return instantiate(
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        sync_batchnorm=False,
        logger=False,
        enable_checkpointing=False,
        plugins=[LightningEnvironment()],
        callbacks=callbacks,
        default_root_dir=trainer.default_root_dir,
    )
