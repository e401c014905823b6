"""A run's calibrated gate, kept in its folder so the next audit or evaluation with the same inputs skips
the calibration (the forward passes over the validation images, their flips and the held-out shifts, for
the run and every reference: most of an audit's time).

Reused only when everything it was computed from is the same, by content, not by name: the QC settings,
`select_on`, the precision, the detectors' fit, the run's weights, each reference's weights in order, the
validation images, and the source of the code that calibrates and renders them. Anything else calibrates
again; an unreadable file is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger("shapeshift")

# What calibrate() sets on a DetectorBank, and nothing else.
STATE = (
    "val_scores",
    "val_acc",
    "val_confidence",
    "atc_cut",
    "atc_ne_cut",
    "reference_val",
    "val_prior",
    "gate",
    "selected_on",
    "selection",
    "cut",
    "novelty_cut",
    "invariances",
    "consistency",
    "reference_consistency",
    "active",
)
KEPT = 8  # calibrations per run folder (audits with and without references, other `keep`s)
_SOURCES = [Path(__file__).parent, Path(__file__).parent.parent / "data"]  # calibrating, rendering


def _module_digest(module: nn.Module, keep: bool = False) -> str:
    """Of every parameter and buffer, by value. `keep`: remembered on the module, for a reference, whose
    weights never change once loaded (a run's own model may still be trained: always hashed afresh)."""
    cached = getattr(module, "_shapeshift_digest", None) if keep else None
    if cached is None:
        h = hashlib.blake2b(digest_size=16)
        for name, tensor in module.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        cached = h.hexdigest()
        if keep:
            object.__setattr__(module, "_shapeshift_digest", cached)
    return cached


def _source_digest() -> str:
    h = hashlib.blake2b(digest_size=16)
    for folder in _SOURCES:
        for path in sorted(folder.glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def key(bank, model: nn.Module, datamodule, select_on: list, bf16: bool) -> str:
    """A digest of everything `bank.calibrate(model, datamodule, select_on, bf16)` depends on."""
    images, labels = datamodule.arrays("val")
    data = hashlib.blake2b(np.ascontiguousarray(images).tobytes(), digest_size=16)
    data.update(np.ascontiguousarray(labels).tobytes())
    invariances = bank.invariance_setting
    parts = {
        "settings": {
            "detectors": list(bank.detectors),
            "k": bank.k,
            "keep": bank.keep,
            "gate": bank.gate_setting,
            "novelty": bank.novelty,
            "invariances": list(invariances) if isinstance(invariances, (list, tuple)) else invariances,
        },
        "declared": list(getattr(datamodule, "invariances", ())),
        "select_on": select_on,
        "bf16": bf16,
        "fitted_on": getattr(bank, "fitted_on", None),
        "detectors": _module_digest(bank),
        "model": _module_digest(model),
        "references": [_module_digest(r, keep=True) for r in bank.references],
        "val": data.hexdigest(),
        "source": _source_digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _entries(path: Path) -> dict:
    """The saved calibrations by key; none from a missing or unreadable file (truncated, not ours, pickled
    by another torch: whatever torch.load raises), which is then calibrated again and rewritten."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return dict(saved["entries"])
    except Exception:  # noqa: BLE001 - any unreadable file is only a missed reuse
        return {}


def state(bank) -> dict:
    return {name: getattr(bank, name) for name in STATE}


def restore(bank, path: Path | None, wanted: str) -> bool:
    """Set the calibration saved under `wanted` on `bank`; False (nothing set) when there is none."""
    if path is None or not path.is_file():
        return False
    try:
        entry = _entries(path)[wanted]
    except KeyError:
        return False
    if set(entry) != set(STATE):
        return False
    for name, value in entry.items():
        setattr(bank, name, value)
    log.info("qc: calibration reused from %s (gate %s, the same inputs)", path, bank.gate)
    return True


def save(path: Path, wanted: str, calibrated: dict) -> None:
    """Add this calibration to the folder's file (the newest KEPT), atomically: a reader never sees half."""
    entries = _entries(path)
    entries.pop(wanted, None)
    entries[wanted] = calibrated
    entries = dict(list(entries.items())[-KEPT:])
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    torch.save({"entries": entries}, tmp)
    os.replace(tmp, path)
