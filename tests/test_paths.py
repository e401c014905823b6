"""The `paths` group: every command writes under one folder, `paths.log_dir` (default `outputs`), moved by
one override (`paths.log_dir=/scratch/x`) or, for every command at once, by SHAPESHIFT_LOG_DIR."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.helpers import CONF, compose_train

# Each command's config, with what it needs to compose, and where under the log dir its folder goes.
COMMANDS = {
    "train": ([], "runs/"),
    "preview": ([], "preview_logs/"),
    "explain": (["run=x"], "explain_logs/"),
    "evaluate": (["run=x"], "evaluate_logs/"),
    "audit": (["run=x", "images=y"], "audit_logs/"),
}


def hydra_dirs(name: str, overrides: list[str]) -> tuple[str, str]:
    """The command's run dir and sweep dir, resolved as Hydra resolves them."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    return OmegaConf.select(cfg, "hydra.run.dir"), OmegaConf.select(cfg, "hydra.sweep.dir")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_writes_under_the_log_dir(name, monkeypatch, tmp_path):
    needs, folder = COMMANDS[name]
    monkeypatch.delenv("SHAPESHIFT_LOG_DIR", raising=False)
    assert hydra_dirs(name, needs)[0].startswith(f"outputs/{folder}")
    monkeypatch.setenv("SHAPESHIFT_LOG_DIR", str(tmp_path / "env"))  # every command at once
    assert hydra_dirs(name, needs)[0].startswith(f"{tmp_path}/env/{folder}")
    moved = hydra_dirs(name, [*needs, f"paths.log_dir={tmp_path}/once"])[0]  # this command only
    assert moved.startswith(f"{tmp_path}/once/{folder}")


def test_one_override_moves_runs_sweeps_studies_and_the_preview(monkeypatch):
    monkeypatch.delenv("SHAPESHIFT_LOG_DIR", raising=False)
    run_dir, sweep_dir = hydra_dirs("train", ["paths.log_dir=/scratch/x"])
    assert run_dir.startswith("/scratch/x/runs/") and sweep_dir.startswith("/scratch/x/sweeps/")
    for study in ("seed_study", "seed_study_gap_strong", "mechanism", "mechanism_size", "remedy"):
        sweep = hydra_dirs("train", [f"experiment={study}", "paths.log_dir=/scratch/x"])[1]
        assert sweep.startswith("/scratch/x/sweeps/"), study
    assert compose_train(["paths.log_dir=/scratch/x"]).paths.log_dir == "/scratch/x"
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        assert compose("preview", overrides=["paths.log_dir=/scratch/x"]).out == "/scratch/x/preview.png"
    # Where a run lands is not what it computes: the folder is left out of sweep job names.
    assert "paths.log_dir" in compose_train([]).hydra.job.config.override_dirname.exclude_keys


# `paths.log_dir` moving a real run's folder, on the command line: test_cli.py's
# test_a_smoke_run_is_quiet_and_ends_with_its_summary runs its smoke run with it.


def test_an_unwritable_log_dir_is_one_line(tmp_path, capsys, monkeypatch):
    from shapeshift.config.preflight import check_output_dir

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_:
        check_output_dir([f"paths.log_dir={blocker}/x"])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr().err
        == f"shapeshift: cannot write to paths.log_dir '{blocker}/x': Not a directory\n"
    )
    monkeypatch.setenv("SHAPESHIFT_LOG_DIR", f"{blocker}/y")
    with pytest.raises(SystemExit):
        check_output_dir(["debug=smoke"])
    assert "cannot write to SHAPESHIFT_LOG_DIR" in capsys.readouterr().err
    check_output_dir([f"hydra.run.dir={tmp_path / 'run'}"])  # a named run dir is what counts
    assert Path(tmp_path / "run").is_dir()


def test_a_path_in_a_sweep_does_not_nest_its_job_folders():
    """`data.root=/tmp/digits` in a job's name made `0_arch=cnn,data.root=/tmp/digits,seed=0` three folders
    deep, and the next job's prefix a folder of its own: every key that takes a path is left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    exclude = set(compose_train([]).hydra.job.config.override_dirname.exclude_keys)
    path_keys = {
        "data.root",
        "data.cache_dir",
        "shift.photo_dir",
        "arch.weights",
        "ckpt_path",
        "paths.log_dir",
    }
    assert path_keys <= exclude
    overrides = OverridesParser.create().parse_overrides(["arch=cnn", "data.root=/tmp/digits", "seed=0"])
    kept = [o for o in overrides if o.key_or_group not in exclude]
    assert all("/" not in o.input_line for o in kept)
