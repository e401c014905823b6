"""Never lose work: resume, idempotent reruns, failure records, a safe cache, clear errors."""

import json
import threading

import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback

from shapeshift.data.cache import cached
from shapeshift.run_dir import RunMismatch, read_record
from shapeshift.train import train
from tests.helpers import run_cli, without_measurements

SMALL = ["debug=smoke", "logger=none", "arch=cnn", "aug=basic", "trainer.max_epochs=3",
         "data.n_train_per_class=48", "data.batch_size=16"]


class KillAfterFirstEpoch(Callback):
    """Dies as the second epoch starts: the first epoch and its checkpoint are complete."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("killed after the first epoch")


def snapshot(run_dir) -> dict:
    """Every file of a run folder and its bytes: "changed nothing" checked literally."""
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_rerun_with_another_config_is_refused_and_changes_nothing(cfg_factory, tmp_path):
    run_dir = tmp_path / "run"
    first = train(cfg_factory(*SMALL[:3], output_dir=run_dir))
    before = snapshot(run_dir)
    with pytest.raises(RunMismatch, match=r"finished run that was made with another config \(differs in aug\.name, "):
        train(cfg_factory(*SMALL[:3], "aug=strong", output_dir=run_dir))
    # A full run into a smoke run's folder: the first keys that differ are named, then a count.
    with pytest.raises(RunMismatch, match=r"differs in data\.batch_size, .*, debug, .* and 3 more\); nothing was "
                                          r"changed\. Rerun with force=true"):
        train(cfg_factory("logger=none", "arch=cnn", "data.n_train_per_class=48", output_dir=run_dir))
    assert snapshot(run_dir) == before
    forced = train(cfg_factory(*SMALL[:3], "aug=strong", "force=true", output_dir=run_dir))
    assert (first["aug"], forced["aug"]) == ("none", "strong") and forced["fingerprint"] != first["fingerprint"]
    assert read_record(run_dir)["fingerprint"] == forced["fingerprint"]


def test_an_interrupted_run_resumes_only_with_its_own_config(cfg_factory, tmp_path):
    run_dir = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg_factory(*SMALL, output_dir=run_dir), callbacks=[KillAfterFirstEpoch()])
    before = snapshot(run_dir)
    with pytest.raises(RunMismatch, match=r"interrupted run that was made with another config \(differs in seed\)"):
        train(cfg_factory(*SMALL, "seed=1", output_dir=run_dir))
    assert snapshot(run_dir) == before


def test_a_folder_without_a_fingerprint_is_never_reused(cfg_factory, tmp_path):
    run_dir = tmp_path / "old"
    train(cfg_factory(*SMALL[:3], output_dir=run_dir))
    (run_dir / "run.json").unlink()  # as a run made before fingerprints
    with pytest.raises(RunMismatch, match="has no fingerprint"):
        train(cfg_factory(*SMALL[:3], output_dir=run_dir))


def test_a_finished_run_is_skipped_unless_forced(cfg_factory, tmp_path):
    first = train(cfg_factory(*SMALL[:3], output_dir=tmp_path / "run"))
    stamp = (tmp_path / "run" / "metrics.json").stat().st_mtime_ns

    class MustNotTrain(Callback):
        def on_train_start(self, trainer, pl_module):
            raise AssertionError("a finished run was trained again")

    assert train(cfg_factory(*SMALL[:3], output_dir=tmp_path / "run"), callbacks=[MustNotTrain()]) == first
    assert (tmp_path / "run" / "metrics.json").stat().st_mtime_ns == stamp
    again = train(cfg_factory(*SMALL[:3], "force=true", output_dir=tmp_path / "run"))
    assert without_measurements(again) == without_measurements(first)
    assert (tmp_path / "run" / "metrics.json").stat().st_mtime_ns != stamp


def test_two_writers_of_one_cache_entry_leave_one_whole_file(tmp_path):
    def build():
        return {"images": np.full((50, 64, 64, 3), 7, np.uint8), "labels": np.arange(50)}

    threads = [threading.Thread(target=cached, args=(tmp_path, "set", {"k": 1}, build)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary files left behind
    calls = []
    out = cached(tmp_path, "set", {"k": 1}, lambda: calls.append(1) or build())
    assert calls == [] and out["images"].sum() == 7 * 50 * 64 * 64 * 3


def test_a_corrupted_byte_is_caught_by_the_checksum(tmp_path):
    build = lambda: {"images": np.arange(1000, dtype=np.uint8)}  # noqa: E731
    cached(tmp_path, "set", {"k": 2}, build)
    (path,) = tmp_path.iterdir()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    calls = []
    out = cached(tmp_path, "set", {"k": 2}, lambda: calls.append(1) or build())
    assert calls == [1] and np.array_equal(out["images"], np.arange(1000, dtype=np.uint8))


def sweep(args, cache_dir, tmp_path):
    return run_cli("train", ["-m", *args], cache_dir)


def test_a_failing_job_is_recorded_and_the_sweep_goes_on_and_reruns_only_it(cache_dir, tmp_path):
    out = tmp_path / "sweep"
    # resnet18_aa cannot take 32 px images: that job fails, the other two finish.
    args = ["arch=cnn,resnet18_aa,maxpool", "debug=smoke", "logger=none", "data.image_size=32",
            f"hydra.sweep.dir={out}"]
    proc = sweep(args, cache_dir, tmp_path)
    assert proc.returncode != 0
    runs = {p.name.split(",")[0]: p for p in out.iterdir() if p.is_dir()}
    assert sorted(runs) == ["0_arch=cnn", "1_arch=resnet18_aa", "2_arch=maxpool"]
    assert (runs["0_arch=cnn"] / "metrics.json").is_file() and (runs["2_arch=maxpool"] / "metrics.json").is_file()
    failed = runs["1_arch=resnet18_aa"]
    assert not (failed / "metrics.json").exists()
    assert "needs images of at least 36 px" in (failed / "error.txt").read_text().splitlines()[0]
    stamp = (runs["0_arch=cnn"] / "metrics.json").stat().st_mtime_ns

    # Relaunch into the same folder: finished jobs are skipped, only the failed one runs again.
    proc = sweep(args, cache_dir, tmp_path)
    assert (runs["0_arch=cnn"] / "metrics.json").stat().st_mtime_ns == stamp
    assert "is finished (metrics.json exists, same config): skipped" in proc.stdout + proc.stderr
    assert json.loads((runs["2_arch=maxpool"] / "metrics.json").read_text())["arch"] == "maxpool"
