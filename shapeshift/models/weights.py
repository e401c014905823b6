"""Start a backbone from weights on disk (`arch.weights=<path>`): nothing is ever downloaded.

Made for the pretraining question: load ImageNet weights saved by hand (torchvision's `resnet18` state dict
has the same names as `ResNet18` here) and train on the stars and moons or a folder. Takes a bare state
dict, a Lightning checkpoint (`state_dict`) or a checkpoint of torchvision's reference training script
(`model`, beside its argparse `args`), with names under `module.` (DDP), `backbone.` (this project's
classifier) or `model.` stripped. Tensors whose shape differs from the network's (the 1000-class head, a
first layer for other channels) are skipped and named in the log.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("shapeshift")


def load_weights(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Copies every tensor of the state dict at `path` whose name and shape match; returns what was not."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"arch.weights={path}: no such file")
    # weights_only: tensors and plain containers only; the reference script's checkpoint adds its Namespace.
    with torch.serialization.safe_globals([argparse.Namespace]):
        saved = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    saved = _state_dict(saved, own)
    usable = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    report = {
        "loaded": sorted(usable),
        "skipped": sorted(k for k in saved if k not in usable),
        "not_in_file": sorted(k for k in own if k not in usable),
    }
    if not usable:
        raise ValueError(f"arch.weights={path}: no tensor matches this network (names or shapes differ)")
    model.load_state_dict(usable, strict=False)
    log.info(
        "arch.weights: %d tensors loaded from %s; skipped (shape or name differs): %s; kept initial: %s",
        len(usable),
        path,
        report["skipped"] or "none",
        report["not_in_file"] or "none",
    )
    return report


PREFIXES = ("module.", "backbone.", "model.")  # DDP, this project's classifier, a wrapper named model


def _state_dict(saved, own: dict) -> dict:
    """The tensors of a state dict or checkpoint, named as `own` names them where a known prefix differs."""
    if isinstance(saved, dict):
        for key in ("state_dict", "model"):
            if isinstance(saved.get(key), dict):
                saved = saved[key]
                break
    if not isinstance(saved, dict):
        return {}
    saved = {k: v for k, v in saved.items() if isinstance(v, torch.Tensor)}
    for prefix in PREFIXES:
        if not any(k in own for k in saved) and any(k.startswith(prefix) for k in saved):
            saved = {k.removeprefix(prefix): v for k, v in saved.items() if k.startswith(prefix)}
    return saved
