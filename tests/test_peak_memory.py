"""Each job's peak memory: the window restarts per job, so a multirun's later jobs do not inherit the
largest earlier one."""

import sys

import pytest
import torch

from shapeshift.engine.runtime import peak_memory_mib, release_memory, reset_peak_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")


def test_the_peak_sees_a_freed_allocation_and_a_reset_forgets_it():
    reset_peak_memory()
    before = peak_memory_mib()
    big = torch.ones(256 * 2**20 // 4)  # 256 MiB, touched
    del big
    after = peak_memory_mib()
    assert after - before >= 250
    reset_peak_memory()
    assert peak_memory_mib() < after - 200


def test_a_run_records_its_own_peak_not_an_earlier_jobs(cfg_factory, tmp_path):
    from shapeshift.train import train

    reset_peak_memory()
    earlier = torch.ones(2**30 // 4)  # 1 GiB: what a larger job before this one in the same process used
    del earlier
    earlier_peak = peak_memory_mib()
    m = train(cfg_factory("debug=smoke", "logger=none", output_dir=tmp_path / "run"))
    assert 0 < m["memory/peak_mib"] < earlier_peak - 256  # without the reset: >= earlier_peak


def resident_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def test_freed_heap_pages_go_back_to_the_system():
    blocks = [bytearray(16 * 1024) for _ in range(20000)]  # 312 MiB in small heap blocks, not mmapped
    kept = blocks[::50]  # a few survivors pin the heap: glibc cannot shrink it from the top
    del blocks
    before = resident_mib()
    release_memory()
    assert resident_mib() < before - 200
    assert len(kept) == 400
