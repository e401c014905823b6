"""Deployment data decides (issue 34's targets), on a trained sweep (seed 0 of the study's cells):

    python -m benchmarks.deployment --sweep <sweep dir>                 # both parts
    python -m benchmarks.deployment --sweep <sweep dir> --only drift --seeds 20 --n 200

drift: per run, the drift test's false alarms over `--seeds` fresh i.i.d. samples of `--n` images (the
       run's own data recipe under other data seeds) and its power on position/s5, contrast/s3 and
       background_photo/s3 (`--seeds` draws of `--n` images from 1,000-image sets).
gate:  stars and moons drawn by PIL here (not the project's renderer), half in their training quadrants
       and half swapped, audited from the command line (`python -m shapeshift.audit ... reference=<sweep>`)
       for every run: the share of right and of wrong predictions its gate flags.
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from benchmarks.common import ROOT, emit  # noqa: E402
from shapeshift.audit.screen import load  # noqa: E402
from shapeshift.engine.pipeline import build_datamodule  # noqa: E402
from shapeshift.engine.restore import load_run_config  # noqa: E402
from shapeshift.qc.drift import LEVEL, Features, drift_test, image_features  # noqa: E402
from shapeshift.runs.folder import find_runs, read_run  # noqa: E402

POWER_SETS = ("position/s5", "contrast/s3", "background_photo/s3")


def _take(f: Features, idx: torch.Tensor) -> Features:
    return Features(f.features[idx], f.classes[idx])


def drift(run_dir: Path, seeds: int, n: int) -> None:
    _, datamodule, model = load(run_dir)
    val = image_features(model, datamodule.arrays("val")[0])
    alarms = []
    t = time.perf_counter()
    for s in range(seeds):
        cfg = load_run_config(run_dir)
        with open_dict(cfg):
            cfg.data.seed, cfg.data.n_test_per_class, cfg.shift.families = 1000 + s, n // 2, {}
        fresh = np.asarray(build_datamodule(cfg, augment=False).arrays("test")[0])
        alarms.append(drift_test(image_features(model, fresh), val, seed=s).drifted)
    cfg = load_run_config(run_dir)
    with open_dict(cfg):
        cfg.shift.n_per_class, cfg.shift.mix_n_per_class = 500, 0
    dm = build_datamodule(cfg, augment=False)
    power, needed = {}, {}
    for name in POWER_SETS:
        feats = image_features(model, dm.arrays(name)[0])
        gen = torch.Generator().manual_seed(0)
        tests = [
            drift_test(_take(feats, torch.randperm(len(feats.classes), generator=gen)[:n]), val, seed=s)
            for s in range(seeds)
        ]
        power[name] = sum(x.drifted for x in tests) / seeds
        found = [x.needed for x in tests if x.needed]
        needed[name] = int(np.median(found)) if found else None
    info = read_run(run_dir)
    emit(
        f"drift arch={info.arch} aug={info.aug}: false alarms {sum(alarms)} of {seeds} fresh i.i.d. samples "
        f"of {n} at level {LEVEL} ({sum(alarms) / seeds:.2f}); power at {n} images: "
        + ", ".join(f"{k} {power[k]:.2f} (median {needed[k]} images to reject)" for k in POWER_SETS)
        + f" [{time.perf_counter() - t:.0f} s]"
    )


# -- stars and moons drawn by PIL: not the project's renderer ------------------------------------------------
STAR_QUADRANTS, MOON_QUADRANTS = (1, 2), (0, 3)  # (row, col) = divmod(q, 2); the study's training layout


def _draw(label: int, quadrant: int, rng, size: int = 64, scale: int = 4) -> Image.Image:
    bg, fg = int(rng.integers(190, 256)), int(rng.integers(0, 71))
    big = size * scale
    img = Image.new("L", (big, big), bg)
    d = ImageDraw.Draw(img)
    row, col = divmod(quadrant, 2)
    half = big / 4
    cx = (2 * col + 1) * half + rng.uniform(-0.15, 0.15) * half
    cy = (2 * row + 1) * half + rng.uniform(-0.15, 0.15) * half
    r = rng.uniform(0.55, 0.8) * half
    turn = rng.uniform(0, 2 * math.pi)
    if label == 0:  # a five-pointed star
        points = [
            (
                cx + (r if k % 2 == 0 else 0.42 * r) * math.sin(turn + k * math.pi / 5),
                cy - (r if k % 2 == 0 else 0.42 * r) * math.cos(turn + k * math.pi / 5),
            )
            for k in range(10)
        ]
        d.polygon(points, fill=fg)
    else:  # a crescent: a disc with an offset disc of background cut out of it
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        ox, oy = 0.55 * r * math.cos(turn), 0.55 * r * math.sin(turn)
        d.ellipse([cx + ox - 0.85 * r, cy + oy - 0.85 * r, cx + ox + 0.85 * r, cy + oy + 0.85 * r], fill=bg)
    return img.resize((size, size), Image.LANCZOS).convert("RGB")


def pil_folder(root: Path, n_per_class: int = 100) -> Path:
    """star/ and moon/ subfolders: half of each class in its training quadrants, half swapped."""
    rng = np.random.default_rng(2026)
    for label, name, home, away in (
        (0, "star", STAR_QUADRANTS, MOON_QUADRANTS),
        (1, "moon", MOON_QUADRANTS, STAR_QUADRANTS),
    ):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            where = "home" if i % 2 == 0 else "swapped"
            quadrant = int(rng.choice(home if where == "home" else away))
            _draw(label, quadrant, rng).save(root / name / f"{where}_{i:03d}.png")
    return root


def gate(sweep: Path, folder: Path, work: Path, only: str | None) -> None:
    for run_dir in find_runs(sweep):
        info = read_run(run_dir)
        if info.metrics is None or (only and info.arch != only):
            continue
        out = work / f"audit_{run_dir.name}"
        t = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "shapeshift.audit",
                f"run='{run_dir}'",  # quoted: a sweep's run folders hold `=` and `,`, which Hydra parses
                f"images={folder}",
                f"reference={sweep}",
                f"out='{out}'",
                "nearest=0",
                "drift=false",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t
        used = next((line for line in done.stdout.splitlines() if line.startswith("estimated accuracy")), "")
        rows = list(csv.DictReader((out / "audit.csv").open()))
        right = [r for r in rows if r["true_class"] == r["predicted_class"]]
        wrong = [r for r in rows if r["true_class"] != r["predicted_class"]]

        def share(rs):
            return f"{sum(int(r['flagged']) for r in rs) / len(rs):.2f} of {len(rs)}" if rs else "none"

        swapped = [r for r in rows if "swapped" in r["file"]]
        acc_swapped = sum(r["true_class"] == r["predicted_class"] for r in swapped) / len(swapped)
        accuracy = len(right) / len(rows)
        emit(
            f"gate arch={info.arch} aug={info.aug} on PIL stars and moons (accuracy {accuracy:.2f}, swapped "
            f"half {acc_swapped:.2f}): flags {share(right)} right and {share(wrong)} wrong predictions "
            f"[{seconds:.0f} s]; {used}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.deployment", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sweep", required=True, help="a trained sweep (seed 0 of the study's cells)")
    parser.add_argument("--only", choices=["drift", "gate"])
    parser.add_argument("--arch", help="only the runs of this arch")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--work", help="where the PIL images and the audits go (default: a temporary folder)")
    args = parser.parse_args()
    sweep = Path(args.sweep).resolve()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-deploy-")).resolve()
    if args.only in (None, "drift"):
        for run_dir in find_runs(sweep):
            info = read_run(run_dir)
            if info.metrics is not None and (not args.arch or info.arch == args.arch):
                drift(run_dir, args.seeds, args.n)
    if args.only in (None, "gate"):
        folder = work / "pil_shapes"
        if not folder.exists():
            pil_folder(folder)
        gate(sweep, folder, work, args.arch)


if __name__ == "__main__":
    main()
