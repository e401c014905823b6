"""Checks a config's types cannot express, and the command line's "did you mean": one readable line each.

The schemas themselves (schema.py) refuse unknown keys and wrong types at compose time; what is left is
values (positive sizes, a gate among the detectors) and naming the key a typo meant.
"""

from __future__ import annotations

import difflib

from omegaconf import DictConfig, OmegaConf

from shapeshift.config.errors import ConfigError
from shapeshift.config.schema import AUTO_GATE, DETECTORS, INVARIANCES, PADDING_MODES, REFERENCE, TrainConfig


def check_detector_roles(qc) -> None:
    """The gate and the novelty detector are among the detectors (or chosen: `auto`, `reference`). Here
    once, for the config (at start) and for a DetectorBank built from settings in code."""
    unknown = [d for d in qc.detectors if d not in DETECTORS]
    if unknown:
        raise ConfigError(f"qc.detectors: unknown {unknown}; choose from {', '.join(DETECTORS)}")
    if qc.gate not in (*qc.detectors, AUTO_GATE, REFERENCE):
        raise ConfigError(
            f"qc.gate={qc.gate} must be auto, reference or one of qc.detectors {list(qc.detectors)}"
        )
    if qc.novelty not in (*qc.detectors, AUTO_GATE, None):
        raise ConfigError(
            f"qc.novelty={qc.novelty} must be auto, null or one of qc.detectors {list(qc.detectors)}"
        )
    if not 0 < qc.keep < 1 or qc.k < 1:
        raise ConfigError(f"qc.keep must be in (0, 1) and qc.k >= 1, got keep={qc.keep}, k={qc.k}")


def validate_qc(qc: DictConfig) -> None:
    if not qc.detectors:
        return
    check_detector_roles(qc)
    if qc.gate == REFERENCE and not qc.reference:
        raise ConfigError("qc.gate=reference needs qc.reference=<run, [runs] or sweep dir>")
    if not 0 <= qc.reference_min_acc <= 1:
        raise ConfigError(f"qc.reference_min_acc must be in [0, 1], got {qc.reference_min_acc}")
    invariances = getattr(qc, "invariances", AUTO_GATE)
    if invariances not in (None, AUTO_GATE):
        if isinstance(invariances, str):
            raise ConfigError(f"qc.invariances must be auto or a list, e.g. [hflip], got {invariances!r}")
        unknown = [n for n in invariances if n not in INVARIANCES]
        if unknown:
            raise ConfigError(f"qc.invariances: unknown {unknown[0]!r}; choose from {', '.join(INVARIANCES)}")


def misspelled(
    overrides: list[str], groups: set[str] = frozenset(), schema: type | None = None
) -> str | None:
    """A one-line "did you mean" for the first command-line key the schema does not have, else None.

    Hydra refuses such a key too, but suggests `+key=value`, which then fails later; this names the
    closest existing key instead. Keys under free-form nodes (`arch`, `optimizer`, ...) are not checked.
    """
    root = OmegaConf.structured(schema or TrainConfig)
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or key.startswith(("+", "~", "-", "hydra.", "hydra/")) or "/" in key or key in groups:
            continue  # additions, deletions, Hydra's own keys and group choices (debug=smoke)
        node, parts = root, key.split(".")
        for i, part in enumerate(parts):
            if (
                not isinstance(node, DictConfig)
                or OmegaConf.get_type(node) in (dict, None)
                or node._is_missing()
            ):
                break  # free-form below here (Any, dict): nothing to check
            keys = [str(k) for k in node]  # not `part in node`: that is False for MISSING values (arch)
            if part not in keys:
                close = difflib.get_close_matches(part, keys, n=1, cutoff=0.6)
                prefix = ".".join(parts[:i] + [""])
                hint = (
                    f"; did you mean {prefix}{close[0]}?"
                    if close
                    else f"; {prefix.rstrip('.') or 'the config'} has no such key"
                )
                return f"unknown config key {key}{hint}"
            node = node._get_node(part)
    return None


def validate(cfg: DictConfig) -> None:
    """Checks types cannot express; raise ConfigError with one readable line."""
    positive = {
        "data.image_size": cfg.data.image_size,
        "data.n_train_per_class": cfg.data.n_train_per_class,
        "data.n_val_per_class": cfg.data.n_val_per_class,
        "data.n_test_per_class": cfg.data.n_test_per_class,
        "data.batch_size": cfg.data.batch_size,
        "data.eval_batch_size": cfg.data.eval_batch_size,
        "trainer.max_epochs": cfg.trainer.max_epochs,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {value}")
    if cfg.data.num_workers < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {cfg.data.num_workers}")
    if cfg.aug.magnitude < 0:
        raise ConfigError(f"aug.magnitude must be >= 0 (1 = the preset as written), got {cfg.aug.magnitude}")
    if cfg.data._target_.endswith("ShapesDataModule") and cfg.data.channels != 3:
        raise ConfigError(f"data.channels must be 3 for the RGB star/moon data, got {cfg.data.channels}")
    for key in ("n_per_class", "mix_n_per_class"):
        n = cfg.shift[key]
        if cfg.shift.families and not 0 <= n <= cfg.data.n_test_per_class:
            raise ConfigError(
                f"shift.{key} must be in 0..data.n_test_per_class ({cfg.data.n_test_per_class}), got {n}: "
                "the o.o.d. sets redraw the i.i.d. test shapes"
            )
    if cfg.eval.checkpoint not in ("last", "best"):
        raise ConfigError(f"eval.checkpoint must be last or best, got {cfg.eval.checkpoint!r}")
    validate_qc(cfg.qc)
    if not isinstance(cfg.arch, DictConfig) or "_target_" not in cfg.arch:
        raise ConfigError("arch must be a config with a _target_ (choose a file from conf/arch/)")
    if cfg.arch.get("padding_mode", "zeros") not in PADDING_MODES:
        raise ConfigError(
            f"arch.padding_mode must be one of {', '.join(PADDING_MODES)}, got {cfg.arch.padding_mode!r}"
        )
