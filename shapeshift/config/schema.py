"""Structured-config schemas: a typo or a wrong type in YAML or on the command line fails at compose time.

The schema is stored in Hydra's ConfigStore as `train_schema` and sits first in `conf/train.yaml`'s
defaults, so every group file is merged into (and checked against) these dataclasses. Value checks that a
type cannot express (positive sizes, an image large enough for the arch) live in `validation.py`.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

# Choices checked at compose time, kept here so that needs no torch (shapeshift/models/padding.py and
# shapeshift/qc/detectors.py use them).
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
DETECTORS = (
    "msp",
    "energy",
    "mahalanobis",
    "mahalanobis_spatial",
    "mahalanobis_stages",
    "knn",
    "knn_spatial",
    "knn_stages",
)
REFERENCE = "reference"  # the detector made of other runs' predictions (qc.reference)
AUTO_GATE = "auto"  # qc.gate: the detector with the lowest E-AURC on held-out validation images
# qc.novelty=auto: the first of these among qc.detectors, best first at telling the catalog from i.i.d.
# images on the study's runs (docs/quality-control.md).
NOVELTY_ORDER = (
    "mahalanobis_stages",
    "mahalanobis_spatial",
    "mahalanobis",
    "knn_stages",
    "knn_spatial",
    "knn",
    "energy",
    "msp",
)


@dataclass
class DataConfig:
    _target_: str = "shapeshift.data.datamodule.ShapesDataModule"
    image_size: int = 64
    channels: int = 3
    num_classes: int = 2
    n_train_per_class: int = 2000
    n_val_per_class: int = 250
    n_test_per_class: int = 500
    seed: int = 0  # data seed: fixed across training seeds so a sweep shares one rendered data set
    batch_size: int = 128
    eval_batch_size: int = 500
    num_workers: int = 0
    cache_dir: str | None = None
    root: str | None = None  # a folder of files to read (data=mnist: the IDX files); the shapes are rendered
    # data=folder (shapeshift/data/folder.py): how images are resized, the split of a folder without
    # train/val/test subfolders, the share of unreadable images tolerated.
    resize: str = "crop"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    max_skipped: float = 0.01


@dataclass
class AugConfig:
    name: str = MISSING
    magnitude: float = 1.0  # scales a preset's ranges through ${times:...} and ${sym:...}: the strength sweep
    transforms: list[Any] = field(default_factory=list)
    parts: dict[str, Any] = field(
        default_factory=dict
    )  # presets a combined preset is built from (basic_flip)


# Resolvers the aug presets use so one knob (`aug.magnitude=0.5,1,2`) sweeps the augmentation strength.
def _count_class_folders(root) -> int:
    """`${class_folders:${data.root}}`: the classes of a data=folder root, counted at compose time (0 for
    a missing folder: the data module then says what is wrong in one line)."""
    from pathlib import Path

    base = Path(str(root)).expanduser() if root else None
    if base is None or not base.is_dir():
        return 0
    if (base / "train").is_dir():
        base = base / "train"
    return sum(1 for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


OmegaConf.register_new_resolver("class_folders", _count_class_folders, replace=True)
OmegaConf.register_new_resolver("times", lambda value, factor: value * factor, replace=True)
OmegaConf.register_new_resolver("sym", lambda value, factor: [-value * factor, value * factor], replace=True)
# Combined presets (conf/aug/basic_flip.yaml) chain the transform lists of the presets they are built from.
OmegaConf.register_new_resolver(
    "concat", lambda *lists: [item for part in lists for item in part], replace=True
)


@dataclass
class ShiftConfig:
    n_per_class: int = 100
    mix_n_per_class: int = 250
    photo_dir: str | None = None
    families: dict[str, Any] = field(default_factory=dict)


# Set by train(), never from YAML: the logger, the callbacks and where Lightning writes.
_TRAINER_SET_IN_CODE = ("logger", "callbacks", "plugins", "default_root_dir")
# Our defaults where they differ from Lightning's. precision and deterministic (typed Any: unions of
# literals) are resolved from `auto` by shapeshift.engine.runtime before the Trainer sees them.
_OURS = {"precision": "auto", "deterministic": "auto", "max_epochs": 5}


def _field_type(annotation):
    """The annotation OmegaConf can check (int, bool, float, str, optionally None), else Any."""
    if annotation in (int, bool, float, str):
        return annotation
    args = typing.get_args(annotation)
    if (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and len(args) == 2
        and type(None) in args
    ):
        inner = next(a for a in args if a is not type(None))
        if inner in (int, bool, float, str):
            return inner | None
    return Any


def trainer_schema() -> type:
    """Every argument of Lightning's `Trainer.__init__`, typed where OmegaConf can check the type: a valid
    argument is never refused, a typo or a wrong type always is."""
    # Called as this module is imported (TrainerConfig below), so importing the schema loads Lightning;
    # torch-free modules (a report) import `shapeshift.config.errors`, never this.
    import lightning.pytorch as pl

    fields = [("_target_", str, field(default="lightning.pytorch.Trainer"))]
    for name, param in inspect.signature(pl.Trainer.__init__).parameters.items():
        if name == "self" or name in _TRAINER_SET_IN_CODE or param.kind is param.VAR_KEYWORD:
            continue
        fields.append((name, _field_type(param.annotation), field(default=_OURS.get(name, param.default))))
    return dataclasses.make_dataclass("TrainerConfig", fields)


TrainerConfig = trainer_schema()


@dataclass
class EvalConfig:
    checkpoint: str = "last"  # the weights evaluated: `last` (the final epoch) or `best` (lowest val/loss)
    ece_bins: int = 15
    consistency_shift: int = 4  # max translation (px) for shift consistency on the i.i.d. test set


# Held-out shifts the `auto` gate is chosen on: the validation shapes with a square cut out of them, an
# operation no set of the default catalog uses (so no reported number took part in the choice).
INVARIANCES = ("hflip", "vflip", "rot180")  # qc.invariances: qc/invariance.py holds what each does
SELECT_ON = [{"occlusion": {"size": 0.3}}, {"occlusion": {"size": 0.5}}, {"occlusion": {"size": 0.7}}]


@dataclass
class QCConfig:
    detectors: list[str] = field(default_factory=lambda: list(DETECTORS))  # fitted on training features
    # Flags predictions likely to be wrong: `auto` (the detector with the lowest E-AURC on the validation
    # images pooled with `select_on`), `reference`, or one of `detectors`.
    gate: str = AUTO_GATE
    # Marks images unlike the training data (the audit's `novel`): `auto` (the first of NOVELTY_ORDER in
    # `detectors`), a detector, or null (none).
    novelty: str | None = AUTO_GATE
    keep: float = 0.95  # share of right i.i.d. validation predictions the gate keeps (novelty: images)
    k: int = 10  # the k of the nearest-neighbour detectors
    reference: Any = None  # other runs to compare with: a run dir, a list of them, or a sweep dir
    reference_min_acc: float = 0.9  # a sweep's runs below this val/acc did not learn the task: not used
    select_on: list[Any] = field(default_factory=lambda: [dict(s) for s in SELECT_ON])
    # Transforms that keep every image's class (hflip, vflip, rot180): references whose predictions change
    # under them are dropped (qc/invariance.py). auto: the data's own (stars and moons: hflip, vflip; a
    # folder, MNIST: none, since a flipped 2 is no 2); [] for none.
    invariances: Any = AUTO_GATE


@dataclass
class PathsConfig:
    # Every command writes under it (conf/paths/default.yaml: SHAPESHIFT_LOG_DIR, else outputs).
    log_dir: str = "outputs"


@dataclass
class TrainConfig:
    seed: int = 0
    output_dir: str = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    arch: Any = MISSING
    aug: AugConfig = field(default_factory=AugConfig)
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optimizer: Any = MISSING
    scheduler: Any = None
    logger: Any = None
    callbacks: dict[str, Any] = field(
        default_factory=dict
    )  # extra Lightning callbacks, by name (conf/callbacks/)
    eval: EvalConfig = field(default_factory=EvalConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    torch_threads: int | None = None
    channels_last: bool = True  # NHWC memory format: faster convolutions on CPU and on GPU
    force: bool = False  # rerun a finished run (its metrics.json exists) instead of skipping it
    optimized_metric: str = "val/loss"  # what `main` returns to a Hydra sweeper (Optuna): never a test metric
    paths: PathsConfig = field(default_factory=PathsConfig)  # runs/ and sweeps/ land under paths.log_dir
    ckpt_path: str | None = None  # start from this checkpoint file (shapeshift/engine/start_from.py)
    ckpt_mode: str = "resume"  # resume: its whole training state; finetune: its weights, a fresh optimizer


@dataclass
class PreviewConfig:
    data: DataConfig = field(default_factory=DataConfig)
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    out: str = "outputs/preview.png"  # conf/preview.yaml: ${paths.log_dir}/preview.png
    examples: int = 8
    severities: list[int] | None = None  # [1,3,5]: a sheet of one image, a row per family, instead


@dataclass
class ExportConfig:
    data: DataConfig = field(default_factory=DataConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    out: str = MISSING  # a new or empty folder
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])


@dataclass
class EvaluateConfig:
    run: str = MISSING  # a run dir, or a sweep dir (every run in it)
    families: list[str] | None = None  # null: the whole current catalog
    out: str = "evaluation.json"
    accelerator: str = "auto"  # auto: the GPU when there is one, else the CPU
    reference: Any = None  # other runs to compare with (see QCConfig.reference); null: the run's own
    gate: str | None = None  # see QCConfig.gate; null: the run's own qc.gate
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)  # its logs land under paths.log_dir


@dataclass
class AuditConfig:
    run: str = MISSING
    images: str = MISSING  # a folder of deployment images; never written to
    out: str | None = None  # null: <run>/audit/<folder name>
    # The gate passes this share of the run's right i.i.d. validation predictions (the novelty detector:
    # of its validation images); it sets the thresholds. QCConfig's, unless given.
    keep: float = QCConfig.keep
    sheet: int = 48  # images on the contact sheet
    accelerator: str = "auto"  # auto: the GPU when there is one, else the CPU
    reference: Any = None  # other runs to compare with (see QCConfig.reference); null: the run's own
    gate: str | None = None  # see QCConfig.gate; null: the run's own qc.gate
    drift: bool = True  # test the folder against the validation images (MMD, qc/drift.py)
    nearest: int = 3  # name the catalog sets the folder is closest to (0: none)
    labels: str | None = None  # a sweep's re-rank: a CSV of file, label (to_label.csv filled in)
    paths: PathsConfig = field(default_factory=PathsConfig)  # its logs land under paths.log_dir


@dataclass
class ExplainConfig:
    run: str = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)  # its logs land under paths.log_dir
    sets: list[str] = field(default_factory=lambda: ["iid", "position/s5"])
    n: int = 8  # images per set, classes in turn
    out: str | None = None  # null: <run>/saliency.png
    accelerator: str = "auto"  # auto: the GPU when there is one, else the CPU


def register_schemas() -> None:
    """Store the schemas under the names the YAML defaults lists use (`train_schema`, ...)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="preview_schema", node=PreviewConfig)
    cs.store(name="export_schema", node=ExportConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="audit_schema", node=AuditConfig)
    cs.store(name="explain_schema", node=ExplainConfig)


# At import, once: every entry point imports this module before Hydra composes its config.
register_schemas()
