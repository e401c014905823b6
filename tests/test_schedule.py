"""Learning-rate presets (`scheduler=warmup|cosine`): the rate each optimizer step actually used."""

import math

import pytest
from lightning.pytorch.callbacks import Callback

from shapeshift.train import train

TINY = [
    "debug=smoke",
    "logger=none",
    "arch=cnn",
    "data.image_size=32",
    "data.n_train_per_class=64",
    "data.batch_size=32",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "qc.detectors=[]",
]


class Rates(Callback):
    def __init__(self):
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_warmup_climbs_per_optimizer_step_then_holds(cfg_factory):
    seen = Rates()
    train(cfg_factory(*TINY, "scheduler=warmup", "scheduler.total_iters=5"), callbacks=[seen])
    expected = [1e-3 * (0.01 + 0.99 * min(k, 5) / 5) for k in range(8)]  # stepped per batch, not per epoch
    assert seen.rates == pytest.approx(expected)


def test_cosine_steps_once_per_epoch(cfg_factory):
    seen = Rates()
    train(cfg_factory(*TINY, "scheduler=cosine"), callbacks=[seen])
    assert seen.rates == pytest.approx([1e-3] * 4 + [1e-3 * (1 + math.cos(math.pi / 2)) / 2] * 4)


def test_no_scheduler_keeps_the_rate(cfg_factory):
    seen = Rates()
    train(cfg_factory(*TINY), callbacks=[seen])
    assert seen.rates == [1e-3] * 8
