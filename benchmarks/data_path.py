"""Sections 1 and 2, and the cache: rendering, the input path per augmentation, the rendered-set cache."""

from __future__ import annotations

import time

import numpy as np
from omegaconf import OmegaConf

from benchmarks.common import ROOT, config, emit, median_rate
from shapeshift.data import shifts
from shapeshift.data.render import render, sample_params
from shapeshift.engine.pipeline import build_datamodule


def bench_cache(cache: str) -> None:
    dm = build_datamodule(config(cache=cache), augment=False)
    t = time.perf_counter()
    dm.prepare_data()
    first = time.perf_counter() - t
    t = time.perf_counter()
    build_datamodule(config(cache=cache), augment=False).prepare_data()
    emit(
        f"cache: first run renders every set in {first:.1f} s; second run {time.perf_counter() - t:.2f} s "
        "(reads, renders nothing)"
    )


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
        rate = median_rate(
            lambda ops=ops: shifts.apply(params, ops, size, np.random.default_rng(0), photos), n
        )
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
