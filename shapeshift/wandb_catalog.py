"""What W&B gets beyond scalars: accuracy-vs-severity per family, and example images with predictions."""

from __future__ import annotations

import re

import torch

from shapeshift.data.base import model_input
from shapeshift.data.render import CLASSES

_SEVERITY = re.compile(r"^test/(?P<family>.+)/s(?P<k>\d+)/acc$")


def severity_curves(metrics: dict) -> dict[str, list[tuple[int, float]]]:
    curves: dict[str, list[tuple[int, float]]] = {}
    for key, value in metrics.items():
        m = _SEVERITY.match(key)
        if m and value is not None:
            curves.setdefault(m["family"], []).append((int(m["k"]), value))
    return {f: sorted(points) for f, points in curves.items()}


@torch.no_grad()
def log_catalog(run, metrics: dict, datamodule, model, examples: int = 4) -> None:
    import wandb

    for family, points in severity_curves(metrics).items():
        table = wandb.Table(data=[[k, acc] for k, acc in points], columns=["severity", "accuracy"])
        run.log({f"severity/{family}": wandb.plot.line(table, "severity", "accuracy",
                                                        title=f"{family}: accuracy vs severity")})
    model.eval()
    device = next(model.parameters()).device
    media = {}
    classes = getattr(datamodule, "class_names", CLASSES)  # data=mnist: the digits
    for name in datamodule.test_set_names:
        images, labels = datamodule.arrays(name)
        x = model_input(images[:examples]).to(device)
        pred = model(x).argmax(1).tolist()
        media[f"examples/{name}"] = [
            wandb.Image(images[i], caption=f"true {classes[labels[i]]}, predicted {classes[pred[i]]}")
            for i in range(len(pred))
        ]
    run.log(media)
