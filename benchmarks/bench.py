"""shapeshift benchmarks: every figure printed as a line and written to benchmarks/results.md.

    python -m benchmarks.bench                 # sections 1-4 and 6 (a few minutes on 2 cores)
    python -m benchmarks.bench --e2e           # adds 5: the default run and the seed sweep (~30 min)
    python -m benchmarks.bench --only step     # one section: render, input, step, eval, startup, e2e, cache
    python -m benchmarks.bench --only parallel # two jobs one after the other vs side by side, per arch
    python -m benchmarks.bench --trainer cpu_bf16 --only step   # the same under another trainer preset
    python -m benchmarks.bench --accelerator cpu --only eval     # Trainers on the CPU (default: GPU if any)

Throughputs are medians of repeated timings; the Lightning and plain-PyTorch loops are measured in the
same process, interleaved, on the same model, data and batch.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

# First: it sets the environment and the denormal mode before lightning and torch's thread pool start.
from benchmarks.common import ROOT, append_results, emit, machine, settings
from benchmarks.data_path import bench_cache, bench_input, bench_render
from benchmarks.end_to_end import bench_e2e, bench_parallel, bench_startup
from benchmarks.floor import bench_floor
from benchmarks.training import bench_eval, bench_step
from shapeshift.engine.runtime import AUTO
from shapeshift.tracking.loggers import silence_known_noise


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--e2e", action="store_true", help="also time the default run and the seed sweep")
    parser.add_argument(
        "--only", choices=["render", "input", "step", "eval", "startup", "parallel", "e2e", "cache", "floor"]
    )
    parser.add_argument(
        "--parallel-epochs", type=int, default=1, help="epochs per job in the parallel section"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.md"))
    parser.add_argument("--sweep-dir", help="keep the timed sweep's runs here (default: a temporary folder)")
    parser.add_argument(
        "--no-ftz", action="store_true", help="keep denormal floats (the state before the fix)"
    )
    parser.add_argument(
        "--trainer", default="default", help="trainer preset (conf/trainer/) for every figure"
    )
    parser.add_argument(
        "--accelerator",
        default=AUTO,
        help="the Trainers' accelerator (cpu, gpu, ...; default auto: the GPU when there is one)",
    )
    args = parser.parse_args()
    settings.trainer, settings.accelerator = args.trainer, args.accelerator
    silence_known_noise()
    emit(
        f"machine: {machine()}, denormals {'kept' if args.no_ftz else 'flushed to zero'}, "
        f"trainer={settings.trainer}, accelerator={settings.accelerator}"
    )
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    wanted = lambda name: args.only in (None, name)  # noqa: E731

    if wanted("cache"):
        bench_cache(cache)
    if wanted("render"):
        bench_render(cache)
    if wanted("input"):
        bench_input(cache)
    rates = bench_step(cache) if wanted("step") else {}
    if rates and wanted("input"):
        emit(f"fastest architecture consumes {max(rates.values()):,.0f} img/s")
    if wanted("eval"):
        bench_eval(cache)
    if wanted("startup"):
        bench_startup(cache)
    if args.only == "parallel":  # minutes: only when asked for
        bench_parallel(cache, args.parallel_epochs)
    wall = bench_e2e(cache, args.sweep_dir) if args.e2e or args.only == "e2e" else None
    if wanted("floor") or wall:
        bench_floor(cache, wall)
    append_results(Path(args.out))


if __name__ == "__main__":
    main()
