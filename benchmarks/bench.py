"""shapeshift benchmarks: every figure printed as a line and written to benchmarks/results.md.

    python -m benchmarks.bench                 # sections 1-4 and 6 (a few minutes on 2 cores)
    python -m benchmarks.bench --e2e           # adds 5: the default run and the seed sweep (about half an hour)
    python -m benchmarks.bench --only step     # one section: render, input, step, eval, startup, e2e, cache
    python -m benchmarks.bench --only parallel # two jobs one after the other vs side by side, per arch
    python -m benchmarks.bench --trainer cpu_bf16 --only step   # the same figures under another trainer preset
    python -m benchmarks.bench --accelerator cpu --only eval     # the Trainers on the CPU (default auto: GPU if any)

Throughputs are medians of repeated timings; the Lightning and plain-PyTorch loops are measured in the
same process, interleaved, on the same model, data and batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

# As shapeshift's entry points do, before the thread pool exists; `--no-ftz` measures without it.
torch.set_flush_denormal("--no-ftz" not in sys.argv)
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import shapeshift.config  # noqa: E402,F401 - the schemas the configs compose against
from shapeshift.data import shifts  # noqa: E402
from shapeshift.data.render import render, sample_params  # noqa: E402
from shapeshift.loggers import silence_known_noise  # noqa: E402
from shapeshift.pipeline import build_backbone, build_classifier, build_datamodule, quality_control  # noqa: E402
from shapeshift.runtime import AUTO, choose_deterministic, choose_precision  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["cnn", "maxpool", "gap", "resnet18", "resnet18_aa"]
LINES: list[str] = []
TRAINER = "default"  # the trainer preset every figure is taken under (`--trainer`)
ACCELERATOR = AUTO  # the Trainers' accelerator (`--accelerator`): auto is the GPU when there is one, else the CPU


def emit(line: str) -> None:
    print(line, flush=True)
    LINES.append(line)


def config(*overrides: str, cache: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", f"trainer={TRAINER}", *overrides])
    with open_dict(cfg):
        cfg.output_dir = tempfile.mkdtemp(prefix="bench-run-")
        cfg.data.cache_dir = cache
        cfg.trainer.precision = choose_precision(cfg.trainer.precision, ACCELERATOR)[0]  # as train does
    return cfg


def median_rate(fn, n_items: int, repeats: int = 3) -> float:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n_items / (time.perf_counter() - t))
    return statistics.median(rates)


# 1 ---------------------------------------------------------------------------------------------------------
def bench_render(cache: str) -> None:
    size, n = 64, 200
    params = sample_params(n // 2, size, np.random.default_rng(0))
    emit(f"render iid: {median_rate(lambda: render(params, size), n):,.0f} img/s")
    families = OmegaConf.to_container(config(cache=cache).shift.families)
    from shapeshift.data.backgrounds import load_photos

    photos = load_photos("eval")
    for family in families:
        ops = shifts.severity_ops(families, family, 3)
        rate = median_rate(lambda ops=ops: shifts.apply(params, ops, size, np.random.default_rng(0), photos), n)
        emit(f"render {family} (s3): {rate:,.0f} img/s")


# 2 ---------------------------------------------------------------------------------------------------------
def bench_input(cache: str) -> None:
    for aug in sorted(p.stem for p in (ROOT / "conf" / "aug").glob("*.yaml")):
        dm = build_datamodule(config(f"aug={aug}", cache=cache))
        dm.prepare_data()
        dm.setup("fit")

        def epoch(dm=dm):
            for batch in dm.train_dataloader():
                dm.on_after_batch_transfer(batch, 0)

        emit(f"input path aug={aug}: {median_rate(epoch, len(dm.train_set), repeats=2):,.0f} img/s")


# 3 ---------------------------------------------------------------------------------------------------------
class StepTimer(Callback):
    """Times training steps after `warmup`, excluding the Trainer's start-up and teardown."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.images = warmup, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.start is not None:
            self.images += len(batch[0])
            self.end = time.perf_counter()


def is_bf16(precision) -> bool:
    return str(precision).startswith("bf16")


def autocast(precision: str):
    """What Lightning's `precision` does to the forward pass, for the plain loop."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=is_bf16(precision))


def plain_loop(model, dm, steps: int, warmup: int, precision: str = "32-true") -> float:
    optimizer = model.configure_optimizers()
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    images, start, it = 0, None, iter(dm.train_dataloader())
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            batch = next(it)
        x, y = dm.on_after_batch_transfer(batch, 0)
        with autocast(precision):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            images += len(y)
    return images / (time.perf_counter() - start)


def lightning_loop(cfg, model, dm, steps: int, warmup: int) -> float:
    timer = StepTimer(warmup)
    trainer = L.Trainer(accelerator=ACCELERATOR, devices=1, max_steps=steps + warmup, limit_val_batches=0,
                        precision=cfg.trainer.precision,
                        logger=False, enable_checkpointing=False, enable_progress_bar=True,
                        enable_model_summary=False,
                        deterministic=choose_deterministic(cfg.trainer.deterministic, ACCELERATOR)[0],
                        num_sanity_val_steps=0, log_every_n_steps=cfg.trainer.log_every_n_steps,
                        callbacks=[timer])
    trainer.fit(model, datamodule=dm)
    return timer.images / (timer.end - timer.start) if timer.start else float("nan")


def step_counts(arch: str) -> tuple[int, int]:
    return (60, 5) if arch == "cnn" else (12, 2)


def bench_step(cache: str) -> dict[str, float]:
    rates = {}
    for arch in ARCHS:
        cfg = config(f"arch={arch}", cache=cache)
        dm = build_datamodule(cfg)
        dm.prepare_data()
        steps, warmup = step_counts(arch)
        light, plain = [], []
        for _ in range(3):  # interleaved: machine noise hits both sides alike
            torch.manual_seed(0)
            model = build_classifier(cfg, build_backbone(cfg, arch), ["iid"])
            plain.append(plain_loop(model, _fit(dm), steps, warmup, cfg.trainer.precision))
            torch.manual_seed(0)
            model = build_classifier(cfg, build_backbone(cfg, arch), ["iid"])
            timer_rate = lightning_loop(cfg, model, dm, steps, warmup)
            light.append(timer_rate)
        lm, pm = statistics.median(light), statistics.median(plain)
        rates[arch] = lm
        emit(f"train step {arch}: lightning {lm:,.0f} img/s, plain loop {pm:,.0f} img/s, ratio {lm / pm:.2f}")
    return rates


def _fit(dm):
    dm.setup("fit")
    return dm


# 4 ---------------------------------------------------------------------------------------------------------
def bench_eval(cache: str) -> None:
    """The test of a finished run: the catalog alone, then with quality control (detectors fitted on the
    training and validation images, then scored in the same forward pass as the metrics)."""
    for arch in ARCHS:
        cfg = config(f"arch={arch}", cache=cache)
        dm = build_datamodule(cfg, augment=False)
        dm.prepare_data()
        dm.setup("test")
        n = len(dm.test_set)
        seconds = {}
        for name, callbacks in (("catalog", []), ("catalog + qc", quality_control(cfg, None))):
            model = build_classifier(cfg, build_backbone(cfg, arch), dm.test_set_names)
            trainer = L.Trainer(accelerator=ACCELERATOR, devices=1, logger=False, enable_checkpointing=False,
                                precision=cfg.trainer.precision, enable_progress_bar=False,
                                enable_model_summary=False, callbacks=callbacks)
            t = time.perf_counter()
            trainer.test(model, datamodule=dm, verbose=False)
            seconds[name] = time.perf_counter() - t
        emit(f"evaluate {arch}: {seconds['catalog']:.1f} s for the catalog ({n:,} images, "
             f"{n / seconds['catalog']:,.0f} img/s); {seconds['catalog + qc']:.1f} s with quality control "
             f"(+{seconds['catalog + qc'] - seconds['catalog']:.1f} s: fit on 4,500 images, 8 detectors scored)")


# 5 ---------------------------------------------------------------------------------------------------------
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
    wall, rss = timed([sys.executable, "-m", "shapeshift.train", "logger=none", f"trainer={TRAINER}"], cache)
    emit(f"end to end default run: {wall:,.0f} s wall, {rss:,.0f} MiB peak RSS")
    sweep_dir = sweep_dir or tempfile.mkdtemp(prefix="bench-sweep-")
    wall, rss = timed([sys.executable, "-m", "shapeshift.train", *SWEEP, f"trainer={TRAINER}",
                       f"hydra.sweep.dir={sweep_dir}"], cache)
    emit(f"end to end seed sweep (5 archs x none,basic, 1 seed): {wall:,.0f} s wall ({wall / 60:.1f} min), "
         f"{rss:,.0f} MiB peak RSS")
    per_run = [json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/metrics.json")]
    for m in sorted(per_run, key=lambda m: (m["arch"], m["aug"])):
        emit(f"  {m['arch']}/{m['aug']}: fit {m['time/fit_s']:.0f} s, test {m['time/test_s']:.0f} s, "
             f"iid {m['test/iid/acc']:.3f}")
    return wall


def bench_startup(cache: str) -> None:
    """What a multirun spends per job outside data, fit and test: the marginal wall time of one more tiny
    job (`debug=smoke`), minus the times the job itself recorded."""
    walls, per_job = {}, {}
    for jobs in (1, 5):
        sweep_dir = tempfile.mkdtemp(prefix="bench-startup-")
        seeds = ",".join(str(s) for s in range(jobs))
        walls[jobs], _ = timed([sys.executable, "-m", "shapeshift.train", "-m", "debug=smoke", "arch=cnn",
                                f"seed={seeds}", f"trainer={TRAINER}", f"hydra.sweep.dir={sweep_dir}"], cache)
        recorded = [json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/metrics.json")]
        per_job[jobs] = statistics.mean(m["time/data_s"] + m["time/fit_s"] + m["time/test_s"] for m in recorded)
    marginal = (walls[5] - walls[1]) / 4
    emit(f"start-up: one smoke job {walls[1]:.1f} s wall (process, imports, Hydra, one job); each further job "
         f"of a multirun {marginal:.2f} s, of which {per_job[5]:.2f} s data + fit + test and "
         f"{marginal - per_job[5]:.2f} s outside them (config, model, Trainer, files)")


def bench_parallel(cache: str, epochs: int) -> None:
    """Per architecture, the same two jobs (seeds 0 and 1) run one after the other with every core each (the
    basic launcher) and side by side with the cores shared out (`hydra/launcher=joblib`, n_jobs = cores)."""
    cores = os.cpu_count() or 1
    launchers = {"one after the other": [], "side by side": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={cores}"]}
    for arch in ARCHS:
        walls, phases = {}, {}
        for mode, extra in launchers.items():
            sweep_dir = tempfile.mkdtemp(prefix="bench-parallel-")
            seeds = ",".join(str(s) for s in range(cores))
            walls[mode], rss = timed([sys.executable, "-m", "shapeshift.train", "-m", f"arch={arch}", f"seed={seeds}",
                                      f"trainer.max_epochs={epochs}", "logger=none", f"trainer={TRAINER}", *extra,
                                      f"hydra.sweep.dir={sweep_dir}"], cache)
            recorded = [json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/metrics.json")]
            if len(recorded) != cores:
                raise RuntimeError(f"{mode}: {len(recorded)} of {cores} jobs wrote metrics.json")
            phases[mode] = (statistics.mean(m["time/fit_s"] for m in recorded),
                            statistics.mean(m["time/test_s"] for m in recorded), rss)
        (seq, par) = (walls[m] for m in launchers)
        emit(f"parallel {arch} ({cores} jobs, {epochs} epoch(s) each): one after the other {seq:.0f} s "
             f"(fit {phases['one after the other'][0]:.0f} s, test {phases['one after the other'][1]:.0f} s per job, "
             f"{phases['one after the other'][2]:,.0f} MiB peak); side by side {par:.0f} s (fit "
             f"{phases['side by side'][0]:.0f} s, test {phases['side by side'][1]:.0f} s per job, "
             f"{phases['side by side'][2]:,.0f} MiB peak of the largest process); side by side / one after the other "
             f"= {par / seq:.2f}")


# FLOP floor ------------------------------------------------------------------------------------------------
def matmul_gflops(dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b

    def run():
        for _ in range(10):
            a @ b

    return median_rate(run, 10 * 2 * 2048**3, repeats=5) / 1e9


def sweep_flops(cache: str) -> float:
    total = 0.0
    for arch in ARCHS:
        cfg = config(f"arch={arch}", cache=cache)
        model = build_backbone(cfg, arch)
        x = torch.randn(cfg.data.batch_size, 3, cfg.data.image_size, cfg.data.image_size)
        with FlopCounterMode(display=False) as fc:
            model(x).sum().backward()
        train_per_img = fc.get_total_flops() / len(x)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model.eval()(x)
        eval_per_img = fc.get_total_flops() / len(x)
        dm = build_datamodule(cfg, augment=False)
        n_eval = sum(len(dm.arrays(n)[1]) for n in dm.test_set_names) + 2 * len(dm.arrays("iid")[1])
        epochs = cfg.trainer.max_epochs
        per_run = (epochs * 2 * cfg.data.n_train_per_class * train_per_img
                   + epochs * 2 * cfg.data.n_val_per_class * eval_per_img + n_eval * eval_per_img)
        emit(f"flops {arch}: {train_per_img / 1e9:.3f} GFLOP/img train step, {eval_per_img / 1e9:.3f} eval; "
             f"{per_run / 1e12:.2f} TFLOP per run")
        total += 2 * per_run  # none and basic
    return total


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
        cpu = name
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only (no GPU)"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"lightning {L.__version__}, {device}, python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--e2e", action="store_true", help="also time the default run and the seed sweep")
    parser.add_argument("--only", choices=["render", "input", "step", "eval", "startup", "parallel", "e2e", "cache",
                                                   "floor"])
    parser.add_argument("--parallel-epochs", type=int, default=1, help="epochs per job in the parallel section")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.md"))
    parser.add_argument("--sweep-dir", help="keep the timed sweep's runs here (default: a temporary folder)")
    parser.add_argument("--no-ftz", action="store_true", help="keep denormal floats (the state before the fix)")
    parser.add_argument("--trainer", default="default", help="trainer preset (conf/trainer/) for every figure")
    parser.add_argument("--accelerator", default=AUTO,
                        help="the Trainers' accelerator (cpu, gpu, ...; default auto: the GPU when there is one)")
    args = parser.parse_args()
    global TRAINER, ACCELERATOR
    TRAINER, ACCELERATOR = args.trainer, args.accelerator
    silence_known_noise()
    emit(f"machine: {machine()}, denormals {'kept' if args.no_ftz else 'flushed to zero'}, trainer={TRAINER}, "
         f"accelerator={ACCELERATOR}")
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    wanted = lambda name: args.only in (None, name)  # noqa: E731

    if wanted("cache"):
        dm = build_datamodule(config(cache=cache), augment=False)
        t = time.perf_counter()
        dm.prepare_data()
        first = time.perf_counter() - t
        t = time.perf_counter()
        build_datamodule(config(cache=cache), augment=False).prepare_data()
        emit(f"cache: first run renders every set in {first:.1f} s; second run {time.perf_counter() - t:.2f} s "
             "(reads, renders nothing)")
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
        gflops = {name: matmul_gflops(dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
        emit(f"matmul (2048x2048): fp32 {gflops['fp32']:,.0f} GFLOPS, bf16 {gflops['bf16']:,.0f} GFLOPS")
        # The floor is at fp32 matmul speed; a bf16-mixed run also gets the floor at bf16 speed,
        # which its convolutions could reach at best.
        dtypes = ["fp32", "bf16"] if is_bf16(config(cache=cache).trainer.precision) else ["fp32"]
        flops = sweep_flops(cache)
        for dtype in dtypes:
            floor = flops / (gflops[dtype] * 1e9)
            emit(f"seed sweep compute floor at {dtype} matmul speed: {floor:,.0f} s ({floor / 60:.1f} min)")
            if wall:
                emit(f"seed sweep wall / {dtype} floor: {wall / floor:.2f}")

    out = Path(args.out)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    block = "\n".join(f"- {line}" for line in LINES)
    header = "" if out.exists() else "# Benchmark results\n\nAppended by `python -m benchmarks.bench`; newest last.\n"
    with out.open("a") as f:
        f.write(f"{header}\n## {stamp} `{' '.join(sys.argv[1:]) or '(default)'}`\n\n{block}\n")
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
