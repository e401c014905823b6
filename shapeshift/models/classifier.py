"""The one LightningModule: trains and evaluates any backbone on any number of named evaluation sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from shapeshift.data import IID
from shapeshift.models.features import tapped
from shapeshift.models.test_run import TestRun
from shapeshift.runs.metric_keys import CONSISTENCY_KEY, test_key


def random_translations(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random (dx, dy) in [-max_shift, max_shift], edges replicated."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


class Classifier(L.LightningModule):
    def __init__(
        self,
        backbone: nn.Module | None = None,
        num_classes: int | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        scheduler_interval: str = "epoch",
        test_set_names: Sequence[str] = (IID,),
        ece_bins: int = 15,
        consistency_shift: int = 4,
        consistency_seed: int = 0,
        channels_last: bool = False,
        backbone_config: dict | None = None,
        class_names: Sequence[str] = (),
    ):
        """`backbone_config` (the arch's `_target_` config) and `class_names` travel in the checkpoint's
        hyperparameters: `Classifier.load_from_checkpoint(path)` rebuilds the backbone from them, with no
        run folder and no config. The optimizer and scheduler factories are not saved (training state)."""
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler"])
        if backbone is None:
            if backbone_config is None:
                raise ValueError("Classifier needs a backbone or the backbone_config to build it from")
            # Local starting weights are not needed to rebuild: the checkpoint's state dict replaces them.
            backbone = instantiate(
                {**backbone_config, "weights": None} if "weights" in backbone_config else backbone_config
            )
        self.class_names = tuple(class_names)
        num_classes = num_classes or (backbone_config or {}).get("num_classes") or len(class_names)
        if not num_classes:
            raise ValueError("Classifier needs num_classes (or a backbone_config or class_names that say it)")
        # NHWC lets oneDNN pick faster convolutions on CPU (measured: GAP CNN ~100 -> ~145 img/s).
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.backbone = backbone.to(memory_format=self.memory_format)
        self.num_classes = num_classes
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"scheduler interval must be 'step' or 'epoch', got {scheduler_interval!r}")
        self.scheduler_interval = scheduler_interval
        self.ece_bins, self.consistency_shift, self.consistency_seed = (
            ece_bins,
            consistency_shift,
            consistency_seed,
        )
        self.loss = nn.CrossEntropyLoss()
        self.loaded_checkpoint: dict = {}
        self.test_run = TestRun()  # the last test's results; QualityControl gives it its detectors
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.set_test_sets(test_set_names)

    def set_test_sets(self, names: Sequence[str]) -> None:
        """Metrics per evaluation set, indexed like the set index the test batches carry."""
        self.test_set_names = list(names)
        # ModuleList, not ModuleDict: set names contain '/'.
        self.test_acc = nn.ModuleList(MulticlassAccuracy(self.num_classes, average="micro") for _ in names)
        self.test_ece = nn.ModuleList(
            MulticlassCalibrationError(self.num_classes, n_bins=self.ece_bins, norm="l1") for _ in names
        )
        self.consistency = MeanMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x.contiguous(memory_format=self.memory_format))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        # Synced: under DDP every rank holds a shard, and val/loss picks `best` and drives early stopping.
        self.log("val/loss", self.loss(logits, y), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._predictions: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._shift_generator = torch.Generator().manual_seed(self.consistency_seed)

    def test_step(self, batch, batch_idx):
        # Batches mix evaluation sets; the third tensor says which set each image belongs to.
        x, y, set_index = batch
        detectors = self.test_run.detectors
        if detectors is None:
            logits = self(x)
        else:
            with tapped(self.backbone) as tap:
                logits = self(x)
            features = tap.features() if detectors.needs_features else {}
            detectors.update(set_index, logits.argmax(1) == y, logits.float(), features, x)
        probs = logits.softmax(dim=1)
        confidence, predicted = probs.max(dim=1)
        self._predictions.append((predicted.cpu(), confidence.float().cpu()))  # in evaluation-set order
        for i in set_index.unique().tolist():
            keep = set_index == i
            self.test_acc[i].update(logits[keep], y[keep])
            self.test_ece[i].update(probs[keep], y[keep])
        if IID in self.test_set_names and self.consistency_shift > 0:
            iid = set_index == self.test_set_names.index(IID)
            if iid.any():
                self.consistency.update(self.shift_agreement(x[iid]))

    def shift_agreement(self, x: torch.Tensor) -> torch.Tensor:
        """Zhang (2019): the same predicted class under two random small translations? (0/1 per image)"""
        a = random_translations(x, self.consistency_shift, self._shift_generator)
        b = random_translations(x, self.consistency_shift, self._shift_generator)
        return (self(a).argmax(1) == self(b).argmax(1)).float()

    def on_test_epoch_end(self):
        # Not sent to the logger here: train() writes the whole result once (W&B: as the run's summary).
        # Per image, in the evaluation sets' order: what W&B's example images are chosen from.
        predictions = (
            tuple(torch.cat(t) for t in zip(*self._predictions, strict=True)) if self._predictions else ()
        )
        results: dict[str, float] = {}
        headline: dict[str, float] = {}  # what also goes through `self.log`: each set's accuracy, consistency
        for i, name in enumerate(self.test_set_names):
            if not self.test_acc[i].update_called:
                continue
            acc = test_key(name, "acc")
            results[acc] = headline[acc] = float(self.test_acc[i].compute())
            results[test_key(name, "ece")] = float(self.test_ece[i].compute())
            self.test_acc[i].reset()
            self.test_ece[i].reset()
        if self.consistency.update_called:
            results[CONSISTENCY_KEY] = headline[CONSISTENCY_KEY] = float(self.consistency.compute())
            self.consistency.reset()
        detectors, curves = self.test_run.detectors, {}
        if detectors is not None:
            metrics, curves = detectors.compute(self.test_set_names)
            results.update({key: float(value) for key, value in metrics.items()})
        # Every value in `test_run`, only the headline in Lightning's callback metrics: its result
        # collection stores each logged value at a cost, and the ~1,500 of a smoke run with QC took 0.7 s
        # of its 1.9 s (measured in process).
        self.test_run = TestRun(detectors, results, predictions, curves)
        self.log_dict(headline, logger=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Saved after validation: this epoch's val/acc and val/loss describe exactly these weights.
        checkpoint["val_metrics"] = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Which weights a test evaluates is part of its result: the epoch (0-based) and step they come from.
        self.loaded_checkpoint = {
            "epoch": int(checkpoint["epoch"]),
            "step": int(checkpoint["global_step"]),
            **checkpoint.get("val_metrics", {}),
        }

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer),
                "interval": self.scheduler_interval,
            },
        }
