"""Never lose work: failure records, idempotent sweeps, a safe cache. (Reuse and resume of a run folder:
test_lifecycle.py.)"""

import json
import threading

import numpy as np

from shapeshift.data.cache import cached
from tests.helpers import run_cli


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
    # resnet18_aa cannot take 32 px images: that job fails first, the one after it still finishes.
    args = [
        "arch=resnet18_aa,cnn",
        "debug=smoke",
        "logger=none",
        "data.image_size=32",
        f"hydra.sweep.dir={out}",
    ]
    proc = sweep(args, cache_dir, tmp_path)
    assert proc.returncode != 0
    runs = {p.name.split(",")[0]: p for p in out.iterdir() if p.is_dir()}
    assert sorted(runs) == ["0_arch=resnet18_aa", "1_arch=cnn"]
    assert (runs["1_arch=cnn"] / "metrics.json").is_file()
    failed = runs["0_arch=resnet18_aa"]
    assert not (failed / "metrics.json").exists()
    assert "needs images of at least 36 px" in (failed / "error.txt").read_text().splitlines()[0]
    stamp = (runs["1_arch=cnn"] / "metrics.json").stat().st_mtime_ns

    # Relaunch into the same folder: the finished job is skipped, only the failed one runs again.
    proc = sweep(args, cache_dir, tmp_path)
    assert proc.returncode != 0  # the failed job ran again, and failed again
    assert (runs["1_arch=cnn"] / "metrics.json").stat().st_mtime_ns == stamp
    assert "is finished (metrics.json exists, same config): skipped" in proc.stdout + proc.stderr
    assert json.loads((runs["1_arch=cnn"] / "metrics.json").read_text())["arch"] == "cnn"
