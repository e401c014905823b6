"""Your own data (issue 33's targets): the folder cache, the input path against training, and the cost of
the corruption catalog against the star/moon catalog.

    python -m benchmarks.folder_data                    # all three, 20,000 JPEGs (a few minutes on 2 cores)
    python -m benchmarks.folder_data --only cache --n 2000

cache:   images/s to decode and resize a folder of 256-px JPEGs to 64 px, and the build's peak resident
         memory (a child process, measured by getrusage), against what the decoded folder would take.
input:   the training input path from that cache (aug none, basic, basic_batched, augmix, augmix_batched)
         against the strided CNN's training step on the same 64-px images (target: input at least 5x
         faster); a batched augmentation's transform on the device (here the CPU) is part of the path.
catalog: building and testing the corruption catalog (24 families x 5 severities; and its 19 ImageNet-C
         families alone, 95 sets) on 1,000 test images against the star/moon catalog on 1,000 test images,
         same model (target: at most 2x); each made in the main process and by `--workers` data workers.
"""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")  # before lightning, as benchmarks.common does
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.common import ROOT, config, emit, median_rate  # noqa: E402
from benchmarks.training import lightning_loop, test_trainer  # noqa: E402
from shapeshift.data.backgrounds import load_photos  # noqa: E402
from shapeshift.engine.pipeline import build_backbone, build_classifier, build_datamodule  # noqa: E402
from shapeshift.runs.metric_keys import HELD_OUT, IMAGENET_C  # noqa: E402

SIDE, SIZE = 256, 64
AUGS = ("none", "basic", "basic_batched", "augmix", "augmix_batched")  # the input paths timed


def write_jpegs(root: Path, n: int) -> float:
    """`n` 256-px JPEGs in two class folders: crops of the shipped photos, flipped and shifted, so each
    decodes like a real photo (quality 90) and no two are the same file."""
    photos = [np.asarray(p) for p in load_photos("eval")]
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = min(h, w, SIDE * 2)
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((SIDE, SIDE))
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        crop.convert("RGB").save(folder / f"{i:05d}.jpg", quality=90)
    return time.perf_counter() - t


BUILD = """
import json, resource, sys, time
from benchmarks.common import config
from shapeshift.engine.pipeline import build_datamodule
cfg = config("data=folder", f"data.root={sys.argv[1]}", "data.image_size=64", cache=sys.argv[2])
dm = build_datamodule(cfg, augment=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
dm.prepare_data()
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "images": len(dm.sources), "before_kib": before, "peak_kib": peak}))
"""


def bench_cache(root: Path, cache: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BUILD, str(root), cache], cwd=ROOT, capture_output=True, text=True, check=True
    )
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mib, before_mib = built["peak_kib"] / 1024, built["before_kib"] / 1024  # ru_maxrss: KiB on Linux
    n = built["images"]
    full_mib, cache_mib = n * SIDE * SIDE * 3 / 2**20, n * SIZE * SIZE * 3 / 2**20
    emit(
        f"folder cache: {n:,} JPEGs of {SIDE} px to {SIZE} px in {built['seconds']:.1f} s "
        f"({n / built['seconds']:,.0f} img/s); peak resident memory {peak_mib:,.0f} MiB, "
        f"{peak_mib - before_mib:,.0f} MiB above the process before the build "
        f"(the decoded folder at full size would be {full_mib:,.0f} MiB, the cache {cache_mib:,.0f} MiB)"
    )
    again = subprocess.run(
        [sys.executable, "-c", BUILD, str(root), cache], cwd=ROOT, capture_output=True, text=True, check=True
    )
    seconds = json.loads(again.stdout.strip().splitlines()[-1])["seconds"]
    emit(f"folder cache, unchanged folder: prepare_data {seconds:.2f} s (nothing decoded)")


def bench_input(root: Path, cache: str, repeats: int) -> None:
    """Each augmentation's input path and the strided CNN's training step, measured in turns (`repeats`),
    so that a slow minute of a shared machine falls on both sides of a ratio; each ratio is the median of
    the turns' ratios."""
    base = ("data=folder", f"data.root={root}", f"data.image_size={SIZE}", "arch=cnn")
    epochs = {}
    for aug in AUGS:
        dm = build_datamodule(config(*base, f"aug={aug}", cache=cache))
        dm.prepare_data()
        dm.setup("fit")

        def epoch(dm=dm, most=40):  # 40 batches of 128: an epoch of 20,000 is minutes under augmix
            for i, batch in enumerate(dm.train_dataloader()):
                dm.on_after_batch_transfer(batch, 0)
                if i + 1 == most:
                    break

        epochs[aug] = (epoch, min(len(dm.train_set), 40 * dm.batch_size))
    cfg = config(*base, cache=cache)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    rates = {aug: [] for aug in AUGS}
    train = []
    for _ in range(repeats):
        L.seed_everything(0, verbose=False)
        model = build_classifier(cfg, build_backbone(cfg, "cnn"), ["iid"])
        train.append(lightning_loop(cfg, model, dm, steps=30, warmup=5))
        for aug, (epoch, n) in epochs.items():
            rates[aug].append(median_rate(epoch, n, repeats=1))
    step = statistics.median(train)
    for aug, rate in rates.items():
        ratios = [r / t for r, t in zip(rate, train, strict=True)]
        emit(
            f"folder input path aug={aug}: {statistics.median(rate):,.0f} img/s, "
            f"{statistics.median(ratios):.1f}x the strided CNN's training (median of {repeats} turns: "
            + ", ".join(f"{r:.1f}x" for r in ratios)
            + f"; training {step:,.0f} img/s at {SIZE} px, {cfg.trainer.precision})"
        )


def _test_seconds(cfg) -> tuple[float, float, int, int]:
    """(seconds to build the sets, seconds to test them, images per set, sets) for an untrained cnn."""
    dm = build_datamodule(cfg, augment=False)
    t = time.perf_counter()
    dm.prepare_data()
    dm.setup("test")
    build = time.perf_counter() - t
    L.seed_everything(0, verbose=False)
    model = build_classifier(cfg, build_backbone(cfg, "cnn"), dm.test_set_names)
    trainer = test_trainer(cfg)
    t = time.perf_counter()
    trainer.test(model, datamodule=dm, verbose=False)
    sets = len(dm.test_set_names) - 1  # the i.i.d. set is tested in both
    per_set = len(dm.arrays(dm.test_set_names[1])[1])  # a catalog set (the last is the mix, smaller)
    return build, time.perf_counter() - t, per_set, sets


# The catalogs compared: the star/moon one, the whole corruption catalog (24 families), and its ImageNet-C
# part alone (the 15 corruptions and the 4 held out: 95 sets, the "100-set" catalog of the target).
CATALOGS = {
    "star/moon (shift=default)": ("default", None),
    "corruptions, all 24 families": ("corruptions", None),
    "corruptions, the 19 ImageNet-C families": ("corruptions", IMAGENET_C + HELD_OUT),
}


def bench_catalog(cache: str, workers: int, repeats: int) -> None:
    """Each catalog made by the main process alone (`data.num_workers=0`, the default) and, if `workers`,
    by that many data workers, a set each at a time (bit-identical sets: tests/test_workers.py). The
    catalogs take turns, `repeats` times, so a slow minute of a shared machine falls on all of them; each
    ratio is the median of the turns' ratios."""
    results = {}
    for w in sorted({0, workers}):
        for turn in range(repeats):
            for label, (shift, families) in CATALOGS.items():
                # 500 per class of the 500 i.i.d. test shapes per class: 1,000 images in every set
                cfg = config(
                    f"shift={shift}",
                    "shift.n_per_class=500",
                    f"data.num_workers={w}",
                    cache=tempfile.mkdtemp(dir=cache),
                )
                if families:
                    with open_dict(cfg):
                        cfg.shift.families = {f: cfg.shift.families[f] for f in families}
                cold = _test_seconds(cfg)
                warm = _test_seconds(cfg)  # the sets are cached now: the cost a second evaluation pays
                results[label, w, turn] = (cold[0] + cold[1], warm[0] + warm[1])
                emit(
                    f"catalog {label}, data.num_workers={w}, turn {turn + 1}: {cold[3]} sets of "
                    f"{cold[2]:,} images; first evaluation: build {cold[0]:.1f} s + test {cold[1]:.1f} s; "
                    f"again (sets cached): build {warm[0]:.1f} s + test {warm[1]:.1f} s"
                )
    star_moon = next(iter(CATALOGS))
    for label in list(CATALOGS)[1:]:
        for w in sorted({0, workers}):
            for base in sorted({0, w}):  # the star/moon catalog made as by default, and with as many workers
                ratios = [
                    np.divide(results[label, w, t], results[star_moon, base, t]) for t in range(repeats)
                ]
                first, cached = np.median(ratios, axis=0)
                emit(
                    f"{label} (data.num_workers={w}) / star-moon catalog (data.num_workers={base}): "
                    f"first evaluation {first:.2f}x, cached {cached:.2f}x (median of {repeats} turns: "
                    + ", ".join(f"{r[0]:.2f}x/{r[1]:.2f}x" for r in ratios)
                    + ")"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.folder_data", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", choices=["cache", "input", "catalog"])
    parser.add_argument("--n", type=int, default=20_000, help="JPEGs in the folder (default 20,000)")
    parser.add_argument("--work", help="where the folder and caches go (default: a new temporary folder)")
    parser.add_argument("--repeats", type=int, default=3, help="turns of each comparison (default 3)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count(),
        help="data.num_workers the catalog is also made with (default: the CPU count; 0: only without)",
    )
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-folder-"))
    root, cache = work / f"jpegs{args.n}", str(work / "cache")
    if args.only in (None, "cache", "input") and not root.exists():
        emit(f"wrote {args.n:,} JPEGs of {SIDE} px in {write_jpegs(root, args.n):.1f} s")
    if args.only in (None, "cache"):
        bench_cache(root, cache)
    if args.only in (None, "input"):
        bench_input(root, cache, args.repeats)
    if args.only in (None, "catalog"):
        Path(cache).mkdir(parents=True, exist_ok=True)
        bench_catalog(cache, args.workers, args.repeats)


if __name__ == "__main__":
    main()
