"""The `experiment=` presets expanded to their jobs, unrun: the seed study, mechanism and remedy sweeps."""

import itertools

import pytest
import torch

from shapeshift.config.validation import validate
from tests.helpers import ARCHS, AUGS, compose_train, sweep_jobs

STUDY_ARCHS = ["cnn", "maxpool", "gap", "resnet18", "resnet18_aa"]
STUDY_AUGS = ["none", "basic", "strong"]
STUDY_SEEDS = [0, 1, 2]


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


def test_the_digits_study_finishes_every_cell_of_seed_0_first():
    params = compose_train(["experiment=digits_study"]).hydra.sweeper.params
    assert list(params)[0] == "seed"  # the basic sweeper's product varies the first key slowest


def test_seed_study_runs_two_jobs_at_a_time_unless_told_otherwise():
    launcher = compose_train(["experiment=seed_study"]).hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2
    basic = compose_train(["experiment=seed_study", "hydra/launcher=basic"]).hydra.launcher
    assert basic._target_.endswith("BasicLauncher")


def test_command_line_narrows_or_extends_the_study():
    jobs = sweep_jobs(["experiment=seed_study", "seed=0,1,2,3,4", "arch=gap"])
    assert len(jobs) == 15
    assert {identity(j) for j in jobs} == set(itertools.product(["gap"], STUDY_AUGS, range(5)))


def test_every_arch_and_aug_of_the_study_composes_and_validates():
    """One seed per (arch, aug): the seed is a number in the config, the expansion test above has all."""
    jobs = sweep_jobs(["experiment=seed_study"])
    for job in jobs[:: len(STUDY_SEEDS)]:
        cfg = compose_train(job)
        validate(cfg)
        arch, aug, seed = identity(job)
        assert (cfg.hydra.runtime.choices.arch, cfg.aug.name, cfg.seed) == (arch, aug, seed)


def test_the_gap_strong_follow_up_trains_longer():
    jobs = sweep_jobs(["experiment=seed_study_gap_strong"])
    assert [identity(j) for j in jobs] == [("gap", "strong", s) for s in STUDY_SEEDS]
    cfg = compose_train(["experiment=seed_study_gap_strong", "arch=gap", "aug=strong"])
    assert cfg.trainer.max_epochs == 20


@pytest.mark.parametrize(
    ("preset", "jobs", "grid"),
    [
        (
            "mechanism",
            18,
            {"arch": {"resnet18", "cnn"}, "arch.padding_mode": {"zeros", "reflect", "circular"}},
        ),
        ("mechanism_size", 18, {"arch": {"resnet18", "resnet18_aa"}, "data.image_size": {"64", "65", "97"}}),
        ("mechanism_receptive_field", 3, {"seed": {"0", "1", "2"}}),
        ("remedy", 45, {"aug": {"none", "flip", "translate"}}),
    ],
)
def test_the_experiment_presets_expand_to_their_jobs(preset, jobs, grid):
    expanded = sweep_jobs([f"experiment={preset}"])
    assert len(expanded) == jobs
    for key, values in grid.items():
        assert {dict(o.split("=", 1) for o in job)[key] for job in expanded} == values
    for job in expanded[:: max(1, jobs // 6)]:  # every kind of job composes and validates
        validate(compose_train([f"experiment={preset}", *job]))


def test_the_receptive_field_preset_sees_the_whole_image(cfg_factory):
    from shapeshift.engine.pipeline import build_backbone

    cfg = cfg_factory("experiment=mechanism_receptive_field")
    wide, study = build_backbone(cfg, "gap"), build_backbone(cfg_factory("arch=gap"), "gap")
    assert study.receptive_field == 13 and wide.receptive_field >= cfg.data.image_size
    # Measured, not only computed: the unit at the centre reacts to both corners; the study's sees 13 px.
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    wide.features(x)[0, :, 32, 32].sum().backward()
    assert x.grad[0, :, 0, 0].abs().sum() > 0 and x.grad[0, :, 63, 63].abs().sum() > 0
    x.grad = None
    study.features(x)[0, :, 32, 32].sum().backward()
    seen = x.grad[0].abs().sum(0).nonzero()
    assert seen.min().item() == 26 and seen.max().item() == 38  # 32 +- 6
