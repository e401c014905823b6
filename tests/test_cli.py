"""The commands as users type them. Those that run a job start a subprocess (each pays ~5 s of imports:
keep these few); those that end before a job starts (`--help`, Hydra's composition errors, the preflight)
run the module's `__main__` in this process (`run_main`). Other cases of the same wiring call what
`python -m shapeshift.train` calls, in this process."""

import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_cli, run_main


def run(args: list[str], cache_dir: Path, **env) -> subprocess.CompletedProcess:
    return run_cli("train", args, cache_dir, **env)


def run_sweep(archs: str, sweep: Path, cache_dir: Path) -> list[Path]:
    proc = run(
        ["-m", f"arch={archs}", "aug=none,basic", "debug=smoke", f"hydra.sweep.dir={sweep}"], cache_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(runs) == 2 * len(archs.split(","))
    assert all((run_dir / "metrics.json").is_file() for run_dir in runs)
    assert archs.split(",")[-1] in proc.stdout  # the report names every arch
    return runs


@pytest.mark.slow
def test_the_users_multirun_command_as_written(tmp_path, cache_dir):
    """The README's sweep, all 8 jobs (smoke data); the fast test below runs the same machinery on 2."""
    run_sweep("cnn,gap,resnet18,resnet18_aa", tmp_path / "sweep", cache_dir)


def test_the_users_multirun_command(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    runs = run_sweep("cnn", sweep, cache_dir)
    # `debug=smoke` is part of every job's name: a full sweep never lands in a smoke run's folder.
    assert [p.name for p in runs][:2] == [
        "0_arch=cnn,aug=none,debug=smoke",
        "1_arch=cnn,aug=basic,debug=smoke",
    ]
    for run_dir in runs:
        assert (run_dir / "metrics.json").is_file(), run_dir
        assert (run_dir / ".hydra" / "config.yaml").is_file()
    # Lightning's own log lines reach each job's train.log, not only the terminal.
    assert "`Trainer.fit` stopped" in (runs[0] / "train.log").read_text()
    # The finished sweep ends with its report, computed from these files.
    assert (sweep / "report.md").is_file() and len((sweep / "results.csv").read_text().splitlines()) == 3

    # Another config into a finished job's folder: refused in one line, the folder left byte for byte.
    job = runs[0]
    before = {p: p.read_bytes() for p in sorted(job.rglob("*")) if p.is_file()}
    proc = run(
        ["arch=cnn", "aug=basic", "debug=smoke", f"hydra.run.dir='{job}'"], cache_dir
    )  # quoted: a comma
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "finished run that was made with another config (differs in aug.name" in err[0]
    assert "force=true" in err[0]
    after = {p: p.read_bytes() for p in sorted(job.rglob("*")) if p.is_file() and p.name != "train.log"}
    assert after == {p: b for p, b in before.items() if p.name != "train.log"}


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = [
        line for line in proc.stderr.strip().splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line
    ]
    return "\n".join(lines)


def test_bad_arch_names_the_valid_choices(tmp_path):
    err = one_line_error(run_main("train", ["arch=vgg", f"hydra.run.dir={tmp_path}"]))
    assert "arch/vgg" in err and "resnet18_aa" in err and "Traceback" not in err


def test_too_small_image_fails_at_start_in_one_line(cfg_factory, tmp_path, capsys):
    """As `main` runs `train` (the same one-line wiring in a subprocess: test_checkpoints.py's
    test_a_refused_checkpoint_setting_is_one_line)."""
    from shapeshift.console.errors import command_errors
    from shapeshift.train import train

    run_dir = tmp_path / "run"
    cfg = cfg_factory("arch=resnet18_aa", "data.image_size=32", "debug=smoke", output_dir=run_dir)
    with pytest.raises(SystemExit) as exit_, command_errors():
        train(cfg)
    assert exit_.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "config error" in line]
    assert len(lines) == 1 and "at least 36 px" in lines[0]
    assert not (run_dir / "metrics.json").exists()
    assert "at least 36 px" in (run_dir / "error.txt").read_text().splitlines()[0]  # train() recorded it


def test_mistyped_key_names_the_key(tmp_path, capsys):
    """The preflight `python -m shapeshift.train` runs before Hydra starts (its wiring in a subprocess:
    test_unwritable_output_dir_is_one_line)."""
    from shapeshift.config.preflight import check_command_line

    with pytest.raises(SystemExit) as exit_:
        check_command_line(["trainer.max_epoch=3", f"hydra.run.dir={tmp_path}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max_epoch" in err and "Traceback" not in err


def test_unknown_aug_names_the_valid_choices():
    """Hydra's own composition error (one line on the command line: test_bad_arch_names_the_valid_choices)."""
    from hydra.errors import MissingConfigException

    from tests.helpers import compose_train

    with pytest.raises(MissingConfigException) as err:
        compose_train(["aug=heavy"])
    assert "aug/heavy" in str(err.value) and "basic" in str(err.value)


def test_unwritable_output_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = run_main("train", [f"hydra.run.dir={blocker}/run", "debug=smoke"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"shapeshift: cannot write to hydra.run.dir '{blocker}/run': Not a directory"
    ]


def test_help_is_short_and_has_examples():
    proc = run_main("train", ["--help"])
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert len(lines) <= 50 and "Examples:" in lines
    assert any(line.startswith("arch: cnn, gap, maxpool, resnet18, resnet18_aa") for line in lines)
    assert sum("python -m shapeshift.train" in line for line in lines) == 5


def test_a_smoke_run_is_quiet_and_ends_with_its_summary(tmp_path, cache_dir):
    """Also `paths.log_dir` on the command line: the run lands under it (test_paths.py's behaviour, proved
    by this run rather than a second one)."""
    log_dir = tmp_path / "scratch"
    proc = run(["debug=smoke", f"paths.log_dir={log_dir}"], cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (metrics,) = log_dir.glob("runs/*/*/metrics.json")
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) <= 25, "\n".join(lines)
    tail = "\n".join(lines[-7:])
    for key in ("test/iid/acc", "test/position/s5/acc", "test/ood/acc", "test/mix/acc"):
        assert key in tail
    assert lines[-1].strip() == f"results: {metrics}"
    assert proc.stdout.strip().splitlines()[-1].strip() == f"results: {metrics}"
    # Lightning's lines reach the log once
    assert "Restoring states" in (metrics.parent / "train.log").read_text()
