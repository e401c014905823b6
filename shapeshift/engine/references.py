"""Reference runs: other trained runs whose predictions tell a run's likely errors (`qc.reference`).

`reference=` names one run, a list of runs, or a sweep folder; a sweep gives its finished runs that
learned the task (val/acc at least `qc.reference_min_acc`), the run itself left out. Every reference is
checked against the run (image size, channels, class names) and its checkpoint is read before anything
is trained or written: a bad reference fails in one line.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, open_dict
from torch import nn

from shapeshift.config.errors import ConfigError
from shapeshift.config.validation import validate_qc
from shapeshift.engine.pipeline import build_datamodule
from shapeshift.engine.restore import checkpoint_path, load_model, load_run_config
from shapeshift.runs.folder import CONFIG_FILE, METRICS_FILE, RECORD_FILE, find_runs, read_run

log = logging.getLogger("shapeshift")
_STAMPED = (CONFIG_FILE, RECORD_FILE, METRICS_FILE)  # a run's identity and its evaluated checkpoint


def entries(spec) -> list[str]:
    """`reference=` as a list of paths: one path, a list (YAML or `[a,b]` on the command line), or none."""
    if not spec:
        return []
    return [str(s) for s in spec] if isinstance(spec, (list, tuple, ListConfig)) else [str(spec)]


def reference_runs(spec, run_dir: Path | None, min_acc: float) -> list[Path]:
    """The run folders `spec` names, each once, never `run_dir` itself."""
    own = run_dir.resolve() if run_dir else None
    runs: list[Path] = []
    for entry in entries(spec):
        path = Path(entry).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"reference={entry}: no such folder")
        if (path / CONFIG_FILE).is_file():
            if path == own:
                raise ConfigError(f"reference={entry} is the run itself; a reference must be another run")
            found = [path]
        else:
            found = [r.resolve() for r in find_runs(path) if r.resolve() != own and learned(r, min_acc)]
            if not found:
                raise ConfigError(
                    f"reference={entry}: no finished run there learned the task (val/acc >= {min_acc})"
                )
        runs += [r for r in found if r not in runs]
    return runs


def learned(run: Path, min_acc: float) -> bool:
    metrics = read_run(run).metrics
    return metrics is not None and float(metrics.get("val/acc") or 0.0) >= min_acc


class SharedForward(nn.Module):
    """A reference's classifier whose outputs are kept per input batch (by its bytes, device and autocast),
    so a sweep that audits or evaluates every run against the others runs each reference once on each batch,
    not once per run. The outputs are tiny (one logit per class per image)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._outputs: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        data = x.detach().contiguous()
        digest = hashlib.blake2b(data.cpu().numpy().tobytes(), digest_size=16).digest()
        key = (digest, tuple(x.shape), str(x.device), torch.is_autocast_enabled(x.device.type))
        if key not in self._outputs:
            self._outputs[key] = self.model(x).detach()
        return self._outputs[key]


_SHARED: dict[tuple[str, float], SharedForward] = {}  # (run, checkpoint mtime) -> its shared classifier
# (run, its config's and record's mtimes) -> ((image size, channels, class names), checkpoint): what a
# reference is checked by, read once per process. A sweep audited against itself checks each of its runs
# once per run of the sweep; loading the config over the schema (0.12 s) each time was a tenth of the audit.
_SEEN: dict[tuple, tuple[tuple, Path]] = {}


def _stamp(run: Path) -> tuple:
    return (str(run), *((run / f).stat().st_mtime if (run / f).is_file() else 0.0 for f in _STAMPED))


def _built(run: Path):
    """A reference's config (no o.o.d. sets) and its data module."""
    ref_cfg = load_run_config(run)
    ref_cfg.shift.families = {}
    return ref_cfg, build_datamodule(ref_cfg, augment=False)


def load_references(
    runs: Sequence[Path], cfg: DictConfig, class_names: Sequence[str]
) -> list[tuple[str, nn.Module]]:
    """Each reference's classifier (eval mode), after checking it sees the same images as `cfg`'s run. A run
    loaded once in this process is handed out again (with the outputs it has computed)."""
    loaded = []
    for run in runs:
        stamp = _stamp(run)
        if stamp not in _SEEN:
            ref_cfg, datamodule = _built(run)
            _SEEN[stamp] = (
                (ref_cfg.data.image_size, datamodule.channels, tuple(datamodule.class_names)),
                checkpoint_path(run, ref_cfg),
            )
        theirs, path = _SEEN[stamp]
        mine = (cfg.data.image_size, cfg.data.channels, tuple(class_names))
        for what, a, b in zip(("image size", "channels", "class names"), mine, theirs, strict=True):
            if a != b:
                raise ConfigError(f"reference {run} does not match this run: {what} {b} vs {a}")
        key = (str(run), path.stat().st_mtime if path.is_file() else 0.0)
        if key not in _SHARED:
            ref_cfg, datamodule = _built(run)
            _SHARED[key] = SharedForward(load_model(run, ref_cfg, datamodule.test_set_names).eval())
        loaded.append((str(run), _SHARED[key]))
    if loaded:
        log.info("qc: %d reference run(s): %s", len(loaded), ", ".join(r for r, _ in loaded))
    return loaded


def qc_references(cfg: DictConfig, spec, run_dir: Path | None) -> list[tuple[str, nn.Module]]:
    """`spec` (a run, runs or a sweep dir) as loaded reference classifiers for the run of `cfg`; none when
    QC is off. Checked against this run's images and classes before anything is written."""
    if not entries(spec) or not cfg.qc.detectors:
        return []
    class_names = build_datamodule(cfg, augment=False).class_names
    return load_references(reference_runs(spec, run_dir, cfg.qc.reference_min_acc), cfg, class_names)


def override_qc(cfg: DictConfig, gate: str | None = None, reference=None) -> DictConfig:
    """A finished run's QC with the `gate=` and `reference=` of `evaluate` or `audit` (None: the run's own),
    checked as a training config's would be."""
    with open_dict(cfg):
        if gate:
            cfg.qc.gate = gate
        if reference:
            cfg.qc.reference = reference
    validate_qc(cfg.qc)
    return cfg
