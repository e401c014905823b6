"""Sections 3 and 4: the training step (Lightning vs a plain PyTorch loop) and the test of a finished run."""

from __future__ import annotations

import statistics
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.common import ARCHS, config, emit, settings
from shapeshift.engine.pipeline import build_backbone, build_classifier, build_datamodule, quality_control
from shapeshift.engine.runtime import choose_deterministic


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
    trainer = L.Trainer(
        accelerator=settings.accelerator,
        devices=1,
        max_steps=steps + warmup,
        limit_val_batches=0,
        precision=cfg.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=True,
        enable_model_summary=False,
        deterministic=choose_deterministic(cfg.trainer.deterministic, settings.accelerator)[0],
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        callbacks=[timer],
    )
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
def test_trainer(cfg, callbacks=()) -> L.Trainer:
    """A quiet Trainer for timing `trainer.test` under the benchmark's accelerator and the run's precision."""
    return L.Trainer(
        accelerator=settings.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        precision=cfg.trainer.precision,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


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
            trainer = test_trainer(cfg, callbacks)
            t = time.perf_counter()
            trainer.test(model, datamodule=dm, verbose=False)
            seconds[name] = time.perf_counter() - t
        emit(
            f"evaluate {arch}: {seconds['catalog']:.1f} s for the catalog ({n:,} images, "
            f"{n / seconds['catalog']:,.0f} img/s); {seconds['catalog + qc']:.1f} s with quality control "
            f"(+{seconds['catalog + qc'] - seconds['catalog']:.1f} s: "
            "fit on 4,500 images, 8 detectors scored)"
        )
