"""Section 5: whole runs as subprocesses: the default run and seed sweep, per-job start-up, parallel jobs."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ARCHS, ROOT, emit, settings


def timed(cmd: list[str], cache: str) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of a command and its children, via GNU time."""
    env = {**os.environ, "SHAPESHIFT_CACHE": cache}
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    return wall, rss


SWEEP = ["-m", "arch=cnn,maxpool,gap,resnet18,resnet18_aa", "aug=none,basic", "logger=none"]


def bench_e2e(cache: str, sweep_dir: str | None = None) -> float:
    wall, rss = timed(
        [sys.executable, "-m", "shapeshift.train", "logger=none", f"trainer={settings.trainer}"], cache
    )
    emit(f"end to end default run: {wall:,.0f} s wall, {rss:,.0f} MiB peak RSS")
    sweep_dir = sweep_dir or tempfile.mkdtemp(prefix="bench-sweep-")
    wall, rss = timed(
        [
            sys.executable,
            "-m",
            "shapeshift.train",
            *SWEEP,
            f"trainer={settings.trainer}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cache,
    )
    emit(
        f"end to end seed sweep (5 archs x none,basic, 1 seed): {wall:,.0f} s wall ({wall / 60:.1f} min), "
        f"{rss:,.0f} MiB peak RSS"
    )
    per_run = [json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/metrics.json")]
    for m in sorted(per_run, key=lambda m: (m["arch"], m["aug"])):
        emit(
            f"  {m['arch']}/{m['aug']}: fit {m['time/fit_s']:.0f} s, test {m['time/test_s']:.0f} s, "
            f"iid {m['test/iid/acc']:.3f}"
        )
    return wall


def bench_startup(cache: str) -> None:
    """What a multirun spends per job outside data, fit and test: the marginal wall time of one more tiny
    job (`debug=smoke`), minus the times the job itself recorded."""
    walls, per_job = {}, {}
    for jobs in (1, 5):
        sweep_dir = tempfile.mkdtemp(prefix="bench-startup-")
        seeds = ",".join(str(s) for s in range(jobs))
        walls[jobs], _ = timed(
            [
                sys.executable,
                "-m",
                "shapeshift.train",
                "-m",
                "debug=smoke",
                "arch=cnn",
                f"seed={seeds}",
                f"trainer={settings.trainer}",
                f"hydra.sweep.dir={sweep_dir}",
            ],
            cache,
        )
        recorded = [json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/metrics.json")]
        per_job[jobs] = statistics.mean(
            m["time/data_s"] + m["time/fit_s"] + m["time/test_s"] for m in recorded
        )
    marginal = (walls[5] - walls[1]) / 4
    emit(
        f"start-up: one smoke job {walls[1]:.1f} s wall (process, imports, Hydra, one job); each further job "
        f"of a multirun {marginal:.2f} s, of which {per_job[5]:.2f} s data + fit + test and "
        f"{marginal - per_job[5]:.2f} s outside them (config, model, Trainer, files)"
    )


def bench_parallel(cache: str, epochs: int) -> None:
    """Per architecture, the same two jobs (seeds 0 and 1) run one after the other with every core each (the
    basic launcher) and side by side with the cores shared out (`hydra/launcher=joblib`, n_jobs = cores)."""
    cores = os.cpu_count() or 1
    launchers = {
        "one after the other": [],
        "side by side": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={cores}"],
    }
    for arch in ARCHS:
        walls, phases = {}, {}
        for mode, extra in launchers.items():
            sweep_dir = tempfile.mkdtemp(prefix="bench-parallel-")
            seeds = ",".join(str(s) for s in range(cores))
            walls[mode], rss = timed(
                [
                    sys.executable,
                    "-m",
                    "shapeshift.train",
                    "-m",
                    f"arch={arch}",
                    f"seed={seeds}",
                    f"trainer.max_epochs={epochs}",
                    "logger=none",
                    f"trainer={settings.trainer}",
                    *extra,
                    f"hydra.sweep.dir={sweep_dir}",
                ],
                cache,
            )
            recorded = [json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/metrics.json")]
            if len(recorded) != cores:
                raise RuntimeError(f"{mode}: {len(recorded)} of {cores} jobs wrote metrics.json")
            phases[mode] = (
                statistics.mean(m["time/fit_s"] for m in recorded),
                statistics.mean(m["time/test_s"] for m in recorded),
                rss,
            )
        (seq, par) = (walls[m] for m in launchers)
        emit(
            f"parallel {arch} ({cores} jobs, {epochs} epoch(s) each): one after the other {seq:.0f} s "
            f"(fit {phases['one after the other'][0]:.0f} s, "
            f"test {phases['one after the other'][1]:.0f} s per job, "
            f"{phases['one after the other'][2]:,.0f} MiB peak); side by side {par:.0f} s (fit "
            f"{phases['side by side'][0]:.0f} s, test {phases['side by side'][1]:.0f} s per job, "
            f"{phases['side by side'][2]:,.0f} MiB peak of the largest process); "
            "side by side / one after the other "
            f"= {par / seq:.2f}"
        )
