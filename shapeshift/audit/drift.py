"""The folder as a whole: is it different from the run's validation images (qc/drift.py's MMD test in the
model's feature space), and which of the run's catalog sets it resembles most."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
from omegaconf import open_dict

from shapeshift.console.progress import track
from shapeshift.data import IID
from shapeshift.engine.pipeline import build_datamodule
from shapeshift.engine.restore import load_run_config
from shapeshift.qc.drift import DriftTest, drift_test, image_features, nearest_sets
from shapeshift.runs.metric_keys import MIX

log = logging.getLogger("shapeshift")
DRIFT_FILE = "drift.json"
CATALOG_PER_CLASS = 50  # images per class of each catalog set the folder is compared with


def catalog_features(run_dir: Path, model, per_class: int = CATALOG_PER_CLASS) -> dict:
    """The model's features of the run's i.i.d. test images and of every catalog set (its `shift` config),
    `per_class` images per class each. The sets are cached, as a test's are."""
    cfg = load_run_config(run_dir)
    with open_dict(cfg):
        cfg.shift.n_per_class = per_class
        cfg.shift.mix_n_per_class = 0  # the mix is every set at once: no one thing to resemble
    dm = build_datamodule(cfg, augment=False)
    dm.prepare_data()
    out = {}
    for name in track([n for n in dm.test_set_names if n != MIX], "drift: the catalog sets"):
        images, labels = dm.arrays(name)
        if name == IID:
            keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
            images = images[np.sort(keep)]
        out[name] = image_features(model, images)
    return out


def folder_drift(
    run_dir: Path, model, datamodule, images: np.ndarray, nearest: int = 3, seed: int = 0
) -> tuple[DriftTest | None, list[tuple[str, float]]]:
    """The drift test of `images` against the run's validation images and the `nearest` catalog sets
    (0: none). None where the folder has fewer than 2 images."""
    if len(images) < 2:
        return None, []
    val = image_features(model, datamodule.arrays("val")[0])
    feats = image_features(model, images)
    test = drift_test(feats, val, seed=seed)
    closest = nearest_sets(feats, catalog_features(run_dir, model), val, nearest) if nearest else []
    return test, closest


def write(out_dir: Path, test: DriftTest | None, closest: list[tuple[str, float]]) -> None:
    record = {
        "test": None if test is None else {**asdict(test), "drifted": test.drifted},
        "nearest": [{"set": name, "mmd2": d} for name, d in closest],
    }
    (out_dir / DRIFT_FILE).write_text(json.dumps(record, indent=2) + "\n")


def describe(test: DriftTest | None, closest: list[tuple[str, float]]) -> list[str]:
    if test is None:
        return ["drift: not tested (fewer than 2 images)"]
    lines = [test.describe()]
    if closest:
        lines.append(
            "closest to: " + ", ".join(f"`{name}` (MMD² {d:.3g})" for name, d in closest) + " of the catalog"
        )
    return lines
