"""The audit's work: one run on a folder of images (`audit`, `summary`), or every run of a sweep ranked
(`rank_sweep`). `shapeshift/audit/__main__.py` is the command that calls them."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from shapeshift.audit import ranking, recommend
from shapeshift.audit.drift import describe as describe_drift
from shapeshift.audit.drift import folder_drift
from shapeshift.audit.drift import write as write_drift
from shapeshift.audit.images import Folder, read_folder
from shapeshift.audit.screen import Screening, load, screen
from shapeshift.audit.sheet import contact_sheet
from shapeshift.config.errors import ConfigError
from shapeshift.config.schema import QCConfig
from shapeshift.console.progress import track
from shapeshift.engine.runtime import AUTO, fast_cpu_math
from shapeshift.qc import estimates
from shapeshift.runs.folder import find_runs, read_run
from shapeshift.runs.provenance import COMMIT_KEY, code_commit

log = logging.getLogger("shapeshift")
fast_cpu_math()  # before torch starts its thread pool (see runtime.py: denormals slow CPU backward 3-5x)


def _paths(run: str, images: str, out: str | None) -> tuple[Path, Path, Path]:
    run_dir, folder = Path(run).expanduser().resolve(), Path(images).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"images={folder} is not a folder")
    if not run_dir.is_dir():
        raise ConfigError(f"run={run_dir} is not a folder")
    out_dir = Path(out).expanduser().resolve() if out else run_dir / "audit" / folder.name
    if out_dir == folder or folder in out_dir.parents:
        raise ConfigError(f"out={out_dir} is inside the image folder; the audit never writes there")
    return run_dir, folder, out_dir


def audit(
    run: str,
    images: str,
    out: str | None = None,
    keep: float = QCConfig.keep,
    sheet: int = 48,
    accelerator: str = AUTO,
    reference=None,
    gate: str | None = None,
    drift: bool = True,
    nearest: int = 3,
) -> dict:
    """One run on one folder: per-image predictions, `flagged` (likely wrong) and `novel` (unlike the
    training images), a contact sheet, a summary dict with a label-free accuracy estimate. The model runs
    on the device `accelerator` chooses (`auto`: the GPU when there is one)."""
    run_dir, folder, out_dir = _paths(run, images, out)
    if not 0 < keep < 1:
        raise ConfigError(
            f"keep must be between 0 and 1 (the share of right i.i.d. validation predictions the gate "
            f"passes), got {keep}"
        )
    loaded = load(run_dir)
    cfg, datamodule, _ = loaded
    resize = datamodule.resize
    sample = read_folder(folder, cfg.data.image_size, datamodule.channels, datamodule.class_names, resize)
    s = screen(run_dir, sample, keep, loaded, accelerator, reference, gate)
    out_dir.mkdir(parents=True, exist_ok=True)
    tested, closest = None, []
    if drift:
        tested, closest = folder_drift(run_dir, loaded[2], datamodule, sample.images, nearest)
        write_drift(out_dir, tested, closest)
    classes = s.class_names
    with open(out_dir / "audit.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "file",
                *(["true_class"] if sample.labelled else []),
                "predicted_class",
                "confidence",
                f"score_{s.gate}",
                "flagged",
                *([f"score_{s.novelty}", "novel"] if s.novelty else []),
            ]
        )
        novel = s.novel
        for i, name in enumerate(sample.names):
            truth = [classes[sample.labels[i]]] if sample.labelled else []
            novelty = [f"{s.novelty_score[i]:.6g}", int(novel[i])] if s.novelty else []
            w.writerow(
                [
                    name,
                    *truth,
                    classes[s.predicted[i]],
                    f"{s.confidence[i]:.6f}",
                    f"{s.score[i]:.6g}",
                    int(s.flagged[i]),
                    *novelty,
                ]
            )
    with open(out_dir / "skipped.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "reason"], *sample.skipped])
    if sample.names:
        captions = [f"{classes[p]} {c:.2f}" for p, c in zip(s.predicted, s.confidence, strict=True)]
        contact_sheet(
            out_dir / "contact_sheet.png",
            sample.images,
            sample.names,
            captions,
            s.score,
            s.flagged,
            sheet,
            f"most likely wrong first (gate {s.gate}); flagged in red",
        )
    return {**_result(s, sample, out_dir), "drift": tested, "nearest": closest}


def _result(s: Screening, sample: Folder, out_dir: Path) -> dict:
    n = len(sample.names)
    result = {
        "out": out_dir,
        "n": n,
        "skipped": sample.skipped,
        "gate": s.gate,
        "threshold": s.cut,
        "keep": s.keep,
        "iid_flagged": s.iid_flagged,
        "flagged": float(s.flagged.mean()) if n else 0.0,
        "novelty": s.novelty,
        "novel": float(s.novel.mean()) if n else 0.0,
        "estimator": s.estimator,
        "estimate": s.estimate,
        "estimate_interval": s.estimate_interval,
        "estimates": s.all_estimates,
        "references": s.references,
        "invariances": s.invariances,
        "consistency": s.consistency,
        "classes": {c: int((s.predicted == i).sum()) for i, c in enumerate(s.class_names)},
        COMMIT_KEY: code_commit(),  # the code that screened the folder
    }
    if sample.labelled:
        correct = s.predicted == sample.labels
        accepted = ~s.flagged
        result["accuracy"] = float(correct.mean()) if n else None
        result["accepted_accuracy"] = float(correct[accepted].mean()) if accepted.any() else None
    return result


def summary(result: dict) -> str:
    n = result["n"]
    low, high = result["estimate_interval"]
    basis = estimates.DESCRIPTION[result["estimator"]]
    if result["references"]:
        basis += f" ({len(result['references'])} reference run(s))"
    lines = [
        f"audited {n} images ({len(result['skipped'])} skipped) -> {result['out']}",
        f"gate: {result['gate']} score < {result['threshold']:.6g} is flagged as likely wrong "
        f"(keeps {result['keep']:.0%} of the run's right validation predictions)",
        f"flagged likely wrong: {result['flagged']:.1%} (i.i.d. validation: {result['iid_flagged']:.1%})",
        *(
            [f"novel (unlike the training images, {result['novelty']}): {result['novel']:.1%}"]
            if result["novelty"]
            else []
        ),
        f"estimated accuracy: {result['estimate']:.3f} (95% interval {low:.3f}-{high:.3f}, sampling error "
        f"only; {basis})",
        "predicted classes: " + ", ".join(f"{c} {k}" for c, k in result["classes"].items()),
    ]
    if result.get("invariances") and n:
        lines.append(
            f"invariance: the prediction survives {', '.join(result['invariances'])} on "
            f"{result['consistency']:.1%} of these images (label-preserving by the data's declaration; "
            "a model that reads the shape keeps it, one that reads a shortcut the flips move does not)"
        )
    if "accuracy" in result:
        acc, accepted = result["accuracy"], result["accepted_accuracy"]
        lines.append(
            f"accuracy on this labelled sample: {acc:.3f}; on the images the gate accepts: "
            + (f"{accepted:.3f}" if accepted is not None else "none accepted")
        )
    if "drift" in result and (result["drift"] or result["nearest"]):
        lines += describe_drift(result["drift"], result["nearest"])
    lines += [f"  skipped {name}: {reason}" for name, reason in result["skipped"]]
    if n and result["flagged"] >= max(3 * result["iid_flagged"], 0.15):
        lines.append(
            f"WARNING: the gate flags {result['flagged']:.0%} of these predictions as likely wrong, against "
            f"{result['iid_flagged']:.0%} of the model's own validation images. Look at contact_sheet.png "
            "before relying on it."
        )
    return "\n".join(lines)


def rank_sweep(
    sweep: str,
    images: str,
    out: str | None = None,
    keep: float = QCConfig.keep,
    accelerator: str = AUTO,
    reference=None,
    gate: str | None = None,
    labels: str | None = None,
    drift: bool = True,
    nearest: int = 3,
    to_label: int = 48,
) -> dict:
    """Every finished run of a sweep screened on one folder; runs and cells ranked (ranking.csv, .md):
    by accuracy on a labelled folder or on `labels` (a CSV of file, label), else by the label-free
    accuracy estimate. Then the recommendation: the run to deploy and the runs it beats, how much the runs
    disagree, the most disputed images to label (unlabelled), the drift test and the nearest catalog sets,
    and the arch x aug that did best on those sets."""
    sweep_dir, folder, out_dir = _paths(sweep, images, out)
    rows, labelled, predictions, sample, seen, decoded = [], None, [], None, {}, {}
    for run_dir in track(find_runs(sweep_dir), "audit: runs"):
        info = read_run(run_dir)
        if info.metrics is None:
            log.warning("skipping %s: not finished", run_dir)
            continue
        loaded = load(run_dir)
        cfg, datamodule, _ = loaded
        # Decoded once for every run that reads images the same way (a sweep's runs mostly do).
        how = (cfg.data.image_size, datamodule.channels, tuple(datamodule.class_names), datamodule.resize)
        if how not in decoded:
            decoded[how] = read_folder(folder, *how[:2], datamodule.class_names, datamodule.resize)
        sample = decoded[how]
        s = screen(run_dir, sample, keep, loaded, accelerator, reference, gate)
        truth = sample.labels
        if labels:
            given = recommend.read_labels(labels, sample.names, s.class_names)
            chosen = np.array(sorted(given))
            truth = np.full(len(sample.names), -1, np.int64)
            truth[chosen] = [given[i] for i in chosen]
        labelled = truth is not None
        scored = truth >= 0 if labelled else None
        rows.append(
            {
                "arch": info.arch,
                "aug": info.aug,
                "seed": info.seed,
                "n": int(scored.sum()) if labelled else len(sample.names),
                "correct": int((s.predicted == truth)[scored].sum()) if labelled else None,
                "flagged": int(s.flagged.sum()),
                "estimate": s.estimate,
                "estimate_low": s.estimate_interval[0],
                "estimate_high": s.estimate_interval[1],
                "estimator": s.estimator,
                "gate": s.gate,
                "consistency": s.consistency,
                "run_dir": str(run_dir),
            }
        )
        seen[str(run_dir)] = (info.metrics, tuple(sample.names))
        predictions.append(s.predicted)
    if not rows:
        raise ConfigError(f"no finished runs under {sweep_dir}")
    runs, cells = ranking.rank(rows, bool(labelled))
    same = len({names for _, names in seen.values()}) == 1  # every run saw the same images (one size)
    preds = np.stack(predictions) if same else None
    advice = {"disagreement": recommend.disagreement(preds) if same else None, "to_label": 0}
    out_dir.mkdir(parents=True, exist_ok=True)
    if same and not labelled:
        advice["to_label"] = recommend.write_to_label(
            out_dir, sample.names, sample.images, preds, s.class_names, to_label
        )
    advice["verdict"] = recommend.verdict(runs, bool(labelled))
    advice["drift"], advice["nearest"] = None, []
    if drift:
        best_dir = Path(runs[0]["run_dir"])
        cfg, datamodule, model = load(best_dir)
        advice["drift"], advice["nearest"] = folder_drift(best_dir, model, datamodule, sample.images, nearest)
        write_drift(out_dir, advice["drift"], advice["nearest"])
    with_metrics = [dict(r, metrics=seen[r["run_dir"]][0]) for r in rows]
    advice["best_on_nearest"] = recommend.best_on_sets(with_metrics, [n for n, _ in advice["nearest"]])
    return {
        **ranking.write(out_dir, runs, cells, bool(labelled), folder, advice),
        "runs": runs,
        "cells": cells,
        "labelled": bool(labelled),
        **advice,
    }
