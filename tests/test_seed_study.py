"""`python -m shapeshift.train -m experiment=seed_study`: the 45 jobs of the seed study, without running them."""

import itertools

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from shapeshift.config import validate
from tests.helpers import ARCHS, AUGS, compose_train

STUDY_ARCHS = ["cnn", "maxpool", "gap", "resnet18", "resnet18_aa"]
STUDY_AUGS = ["none", "basic", "strong"]
STUDY_SEEDS = [0, 1, 2]


def sweep_jobs(command_line: list[str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper launches, computed as BasicSweeper.sweep does: the config's
    `hydra.sweeper.params`, then the command line, parsed and expanded by `split_arguments`."""
    parser = OverridesParser.create()
    # A multirun composes its sweep config without the command line's sweeps (they go to the sweeper).
    cfg = compose_train([o.input_line for o in parser.parse_overrides(command_line) if not o.is_sweep_override()])
    assert cfg.hydra.sweeper._target_ == "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()] + command_line
    overrides = parser.parse_overrides(params)
    return [job for batch in BasicSweeper.split_arguments(overrides, max_batch_size=None) for job in batch]


def identity(job: list[str]) -> tuple[str, str, int]:
    kv = dict(o.split("=", 1) for o in job)
    return kv["arch"], kv["aug"], int(kv["seed"])


def test_seed_study_is_45_jobs_arch_by_aug_by_seed():
    jobs = sweep_jobs(["experiment=seed_study"])
    assert len(jobs) == 45
    assert [identity(j) for j in jobs] == list(itertools.product(STUDY_ARCHS, STUDY_AUGS, STUDY_SEEDS))
    assert all("experiment=seed_study" in j for j in jobs)
    assert set(STUDY_ARCHS) <= set(ARCHS) and set(STUDY_AUGS) <= set(AUGS)  # every option has its YAML


def test_seed_study_sweep_folder_and_job_names():
    cfg = compose_train(["experiment=seed_study"])
    assert "/seed_study-" in cfg.hydra.sweep.dir
    # `experiment` is left out of the job folder names: 0_arch=cnn,aug=none,seed=0, ...
    assert "experiment" in cfg.hydra.job.config.override_dirname.exclude_keys


def test_seed_study_runs_two_jobs_at_a_time_unless_told_otherwise():
    launcher = compose_train(["experiment=seed_study"]).hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2
    basic = compose_train(["experiment=seed_study", "hydra/launcher=basic"]).hydra.launcher
    assert basic._target_.endswith("BasicLauncher")


def test_command_line_narrows_or_extends_the_study():
    jobs = sweep_jobs(["experiment=seed_study", "seed=0,1,2,3,4", "arch=gap"])
    assert len(jobs) == 15
    assert {identity(j) for j in jobs} == set(itertools.product(["gap"], STUDY_AUGS, range(5)))


def test_every_job_composes_and_validates():
    for job in sweep_jobs(["experiment=seed_study"]):
        cfg = compose_train(job)
        validate(cfg)
        arch, aug, seed = identity(job)
        assert (cfg.hydra.runtime.choices.arch, cfg.aug.name, cfg.seed) == (arch, aug, seed)


def test_the_gap_strong_follow_up_trains_longer():
    jobs = sweep_jobs(["experiment=seed_study_gap_strong"])
    assert [identity(j) for j in jobs] == [("gap", "strong", s) for s in STUDY_SEEDS]
    cfg = compose_train(["experiment=seed_study_gap_strong", "arch=gap", "aug=strong"])
    assert cfg.trainer.max_epochs == 20
