"""Section 6, the FLOP floor: matmul speed and the seed sweep's FLOPs, so the sweep's least possible time."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import ARCHS, config, emit, median_rate
from benchmarks.training import is_bf16
from shapeshift.engine.pipeline import build_backbone, build_datamodule


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
        per_run = (
            epochs * 2 * cfg.data.n_train_per_class * train_per_img
            + epochs * 2 * cfg.data.n_val_per_class * eval_per_img
            + n_eval * eval_per_img
        )
        emit(
            f"flops {arch}: {train_per_img / 1e9:.3f} GFLOP/img train step, {eval_per_img / 1e9:.3f} eval; "
            f"{per_run / 1e12:.2f} TFLOP per run"
        )
        total += 2 * per_run  # none and basic
    return total


def bench_floor(cache: str, wall: float | None) -> None:
    """The sweep's compute floor at matmul speed and, given the sweep's measured `wall`, how far above it."""
    gflops = {
        name: matmul_gflops(dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
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
