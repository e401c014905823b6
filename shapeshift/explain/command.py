"""Saliency pictures: where a trained run looks on i.i.d. and shifted images (Grad-CAM, via torchcam).

    python -m shapeshift.explain run=<run dir>                                  # iid and position/s5
    python -m shapeshift.explain run=<run dir> sets=[iid,position/s5,background_photo/s5] n=10

Writes `<run>/saliency.png` (or `out=`): one row per set, each image with its class-activation map over
it, titled true -> predicted (red when wrong).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf, open_dict

from shapeshift.config.errors import ConfigError
from shapeshift.data import IID, shifts
from shapeshift.engine.pipeline import build_datamodule
from shapeshift.engine.restore import load_model, load_run_config
from shapeshift.engine.runtime import AUTO, fast_cpu_math
from shapeshift.explain.saliency import draw_grid, explain_sets
from shapeshift.runs.folder import read_run
from shapeshift.runs.metric_keys import MIX

fast_cpu_math()  # before torch starts its thread pool (see runtime.py: denormals slow CPU backward 3-5x)


def explain(run: str, sets: list[str], n: int = 8, out: str | None = None, accelerator: str = AUTO) -> Path:
    """Grad-CAM grid of `n` images per set, computed on the device `accelerator` chooses (`auto`: the GPU when
    there is one)."""
    run_dir = Path(run).expanduser().resolve()
    cfg = load_run_config(run_dir)
    catalog = OmegaConf.to_container(cfg.shift, resolve=True).get("families") or {}
    families = sorted({s.split("/")[0] for s in sets if s not in (IID, MIX)})
    with open_dict(cfg):
        cfg.shift.families = shifts.select(catalog, families) if families else {}
    datamodule = build_datamodule(cfg, augment=False)
    unknown = [s for s in sets if s not in datamodule.test_set_names]
    if unknown:
        raise ConfigError(
            f"sets: unknown {unknown}; this run has {', '.join(datamodule.test_set_names[:8])}, ..."
        )
    model = load_model(run_dir, cfg, datamodule.test_set_names)
    info = read_run(run_dir)
    rows = explain_sets(model, datamodule, list(sets), n, accelerator)
    path = Path(out).expanduser() if out else run_dir / "saliency.png"
    knobs = f"{cfg.data.image_size} px" + (
        f", padding {cfg.arch.padding_mode}" if cfg.arch.get("padding_mode") else ""
    )
    return draw_grid(
        path,
        rows,
        tuple(datamodule.class_names),
        f"Grad-CAM: arch={info.arch} ({knobs}) aug={info.aug} seed={info.seed}",
    )
