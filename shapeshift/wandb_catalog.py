"""What W&B gets beyond scalars: accuracy-vs-severity per family, and example images with predictions."""

from __future__ import annotations

import torch

from shapeshift.data.base import model_input
from shapeshift.run_dir import severity_points


@torch.no_grad()
def log_catalog(run, metrics: dict, datamodule, model, examples: int = 4) -> None:
    import wandb

    for family, points in severity_points(metrics).items():
        table = wandb.Table(data=[[k, acc] for k, acc in points], columns=["severity", "accuracy"])
        run.log({f"severity/{family}": wandb.plot.line(table, "severity", "accuracy",
                                                        title=f"{family}: accuracy vs severity")})
    model.eval()
    device = next(model.parameters()).device
    media = {}
    classes = datamodule.class_names
    for name in datamodule.test_set_names:
        images, labels = datamodule.arrays(name)
        x = model_input(images[:examples]).to(device)
        pred = model(x).argmax(1).tolist()
        media[f"examples/{name}"] = [
            wandb.Image(images[i], caption=f"true {classes[labels[i]]}, predicted {classes[pred[i]]}")
            for i in range(len(pred))
        ]
    run.log(media)
