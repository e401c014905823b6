"""The one LightningModule: trains and evaluates any backbone on any number of named evaluation sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy


class Classifier(L.LightningModule):
    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        test_set_names: Sequence[str] = ("iid",),
    ):
        super().__init__()
        self.backbone = backbone
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.set_test_sets(test_set_names, num_classes)

    def set_test_sets(self, names: Sequence[str], num_classes: int | None = None) -> None:
        """One accuracy metric per evaluation set, in the order of the test dataloaders."""
        num_classes = num_classes or self.train_acc.num_classes
        self.test_set_names = list(names)
        # ModuleDict keys may not contain '.', and set names contain '/'.
        self.test_acc = nn.ModuleList(MulticlassAccuracy(num_classes, average="micro") for _ in names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

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
        self.log("val/loss", self.loss(logits, y))
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch, batch_idx):
        # Batches mix evaluation sets; the third tensor says which set each image belongs to.
        x, y, set_index = batch
        logits = self(x)
        for i in set_index.unique().tolist():
            keep = set_index == i
            self.test_acc[i].update(logits[keep], y[keep])

    def on_test_epoch_end(self):
        for name, metric in zip(self.test_set_names, self.test_acc, strict=True):
            if metric.update_called:
                self.log(f"test/{name}/acc", metric.compute())
            metric.reset()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}
