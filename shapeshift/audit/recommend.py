"""What a sweep's audit on one folder ends with: which run to deploy and how sure that is, where the runs
disagree too much for label-free estimates to decide (the images to label first), a re-rank on the labels
a user gives back, and the arch x aug that did best on the catalog sets nearest to the folder."""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shapeshift.audit.sheet import contact_sheet
from shapeshift.config.errors import ConfigError
from shapeshift.reporting.stats import mean_interval
from shapeshift.runs.metric_keys import test_key

TO_LABEL_CSV, TO_LABEL_SHEET = "to_label.csv", "to_label.png"
DECIDES = 0.05  # runs that disagree on more than this share of the images cannot be told apart unlabelled


def disagreement(predictions: np.ndarray) -> float:
    """Mean over pairs of runs of the share of images on which their predicted classes differ."""
    pairs = list(itertools.combinations(range(len(predictions)), 2))
    if not pairs or not predictions.shape[1]:
        return 0.0
    return float(np.mean([(predictions[a] != predictions[b]).mean() for a, b in pairs]))


def dispute(predictions: np.ndarray, classes: int) -> np.ndarray:
    """Per image, the entropy (bits) of the runs' votes: 0 where every run agrees."""
    votes = np.stack([(predictions == c).mean(0) for c in range(classes)], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(votes > 0, -votes * np.log2(votes), 0.0)
    return terms.sum(1)


def write_to_label(
    out: Path, names: list[str], images: np.ndarray, predictions: np.ndarray, class_names, k: int
) -> int:
    """The `k` most disputed images (never one every run agrees on): to_label.csv and a contact sheet.
    Returns how many were written."""
    score = dispute(predictions, len(class_names))
    order = [i for i in np.argsort(-score, kind="stable") if score[i] > 0][:k]
    with open(out / TO_LABEL_CSV, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "dispute_bits", *(f"votes_{c}" for c in class_names)])
        for i in order:
            votes = [int((predictions[:, i] == c).sum()) for c in range(len(class_names))]
            w.writerow([names[i], "", f"{score[i]:.4f}", *votes])
    if order:
        captions = [
            " / ".join(f"{c[:5]} {int((predictions[:, i] == j).sum())}" for j, c in enumerate(class_names))
            for i in range(len(names))
        ]
        contact_sheet(
            out / TO_LABEL_SHEET,
            images,
            names,
            captions,
            -score,
            np.zeros(len(names), bool),
            k,
            "label these first: the images the runs disagree on most (votes per class)",
        )
    return len(order)


def read_labels(path: str, names: Sequence[str], class_names: Sequence[str]) -> dict[int, int]:
    """`labels=<csv>` with columns file and label (a class name; blank rows skipped): image index -> class."""
    index = {n: i for i, n in enumerate(names)}
    by_class = {c.lower(): i for i, c in enumerate(class_names)}
    out: dict[int, int] = {}
    with open(Path(path).expanduser(), newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
            raise ConfigError(f"labels={path}: needs the columns file and label (to_label.csv has them)")
        for row in reader:
            label = (row["label"] or "").strip()
            if not label:
                continue
            if row["file"] not in index:
                raise ConfigError(f"labels={path}: {row['file']} is not an image of this folder")
            if label.lower() not in by_class:
                raise ConfigError(
                    f"labels={path}: {label!r} is no class; choose from {', '.join(class_names)}"
                )
            out[index[row["file"]]] = by_class[label.lower()]
    if not out:
        raise ConfigError(f"labels={path}: no labelled row")
    return out


def best_on_sets(rows: Sequence[dict], sets: Sequence[str]) -> list[dict]:
    """Cells ranked by their runs' mean accuracy (metrics.json) over `sets`, with a 95% interval over
    seeds: the arch x aug that did best where the catalog looks most like the folder."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        metrics = r.get("metrics") or {}
        values = [metrics.get(test_key(s, "acc")) for s in sets]
        if sets and all(isinstance(v, (int, float)) for v in values):
            cells.setdefault((r["arch"], r["aug"]), []).append(float(np.mean(values)))
    ranked = [
        {"arch": arch, "aug": aug, "accuracy": mean_interval(values), "runs": len(values)}
        for (arch, aug), values in cells.items()
    ]
    return sorted(ranked, key=lambda c: -c["accuracy"].mean)


def verdict(runs: Sequence[dict], labelled: bool) -> dict:
    """The run to deploy (runs come ranked), the runs whose interval lies wholly below its own, and whether
    the estimates can decide at all."""
    best = runs[0]
    value, low, high = (
        (best["accuracy"], best["low"], best["high"])
        if labelled
        else (best["estimate"], best["estimate_low"], best["estimate_high"])
    )
    beats = [
        r for r in runs[1:] if (r["high"] if labelled else r["estimate_high"]) < low and not math.isnan(low)
    ]
    return {"run": best, "value": value, "low": low, "high": high, "beats": beats, "others": len(runs) - 1}
