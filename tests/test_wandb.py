"""What W&B gets from a train run and from a sweep's report run, read back from the offline run files: a
headline summary, one severity panel per family, compact tables, artifacts, the sweep's config and native
charts. Offline throughout: nothing reaches the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shapeshift.runs.metric_keys import SEVERITY_KEY
from shapeshift.train import train
from tests.helpers import finished_wandb_records

FAMILIES = ("position", "scale")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # artifacts staged for a later sync
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def read_run(run_dir: Path) -> dict:
    """The offline run file's run record, summary, history rows, artifacts and defined metrics."""
    records = finished_wandb_records(run_dir)
    kinds = {}
    for r in records:
        kinds.setdefault(r.WhichOneof("record_type"), []).append(r)
    (run,) = [r.run for r in kinds["run"]]
    return {
        "run": run,
        "config": {u.key: json.loads(u.value_json) for u in run.config.update},
        # custom charts (wandb.plot): `_wandb.visualize.<key>`, added to the config once logged
        "charts": {
            u.nested_key[2]: json.loads(u.value_json)["panel_config"]["panelDefId"]
            for r in kinds.get("config", [])
            for u in r.config.update
            if list(u.nested_key[:2]) == ["_wandb", "visualize"]
        },
        "summary": {
            u.key or "/".join(u.nested_key): json.loads(u.value_json)
            for r in kinds.get("summary", [])
            for u in r.summary.update
        },
        "history": [
            {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in kinds.get("history", [])
        ],
        "artifacts": {
            r.artifact.name: (
                r.artifact.type,
                list(r.artifact.aliases),
                [e.path for e in r.artifact.manifest.contents],
            )
            for r in kinds.get("artifact", [])
        },
        "defined": {
            r.metric.name or r.metric.glob_name: r.metric.step_metric for r in kinds.get("metric", [])
        },
    }


def user_keys(keys) -> set[str]:
    """Keys a user logged, without W&B's own (`_step`, `_runtime`, ...)."""
    return {k for k in keys if not k.startswith("_")}


def test_a_train_run_logs_a_headline_curves_compact_tables_and_artifacts(cfg_factory, tmp_path, offline):
    cfg = cfg_factory("debug=smoke", "logger=wandb", "arch=cnn", "logger.log_checkpoint=true")
    train(cfg)
    (run_dir,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    got = read_run(run_dir)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    families = sorted({k.split("/")[1] for k in metrics if k.count("/") == 3 and "/s5/" in k})
    import wandb

    assert wandb.run is None  # finished, so a next job cannot log into this run

    # The run: a train job, named by its config group choices so the dashboard can group and filter.
    assert got["run"].job_type == "train" and "smoke" in got["run"].tags
    assert got["config"]["choices"] == {
        **{"arch": "cnn", "aug": "none", "cell": "cnn-none", "seed": 0, "data": "shapes"},
        **{"trainer": "default", "scheduler": None, "callbacks": "default", "experiment": None},
        "debug": "smoke",
    }

    # The summary: a few dozen headline numbers, not every float of metrics.json.
    summary = got["summary"]
    headline = {
        k for k in user_keys(summary) if k.startswith(("test/", "val/", "epochs", "time/", "memory/"))
    }
    assert 20 <= len(headline) <= 45 < sum(isinstance(v, float) for v in metrics.values())
    for key in ("test/iid/acc", "test/ood/acc", "test/mix/acc", "test/position/s5/acc", "test/position/acc"):
        assert summary[key] == metrics[key]
    assert all(f"test/{f}/acc" in summary for f in families)
    gate = metrics["qc/gate"]
    assert (
        summary["qc/gate"] == gate and summary[f"test/mix/eaurc/{gate}"] == metrics[f"test/mix/eaurc/{gate}"]
    )
    assert {k for k in metrics if k.startswith("test/acc_estimate_mae/")} <= set(summary)
    per_set = {k for k in summary if SEVERITY_KEY.match(k)}
    assert per_set == {"test/position/s5/acc"}  # of the sets by severity, only the study's headline one
    assert not any(k.startswith("severity/") for k in summary)  # the curves make no summary columns

    # One severity panel per family: accuracy only, against the step metric `severity`.
    curve_keys = {k for row in got["history"] for k in row if k.startswith("severity/")}
    assert curve_keys == {f"severity/{f}/acc" for f in families}
    curve = {row["severity"]: row for row in got["history"] if "severity" in row}
    assert sorted(curve) == [0, 1, 2, 3, 4, 5]
    assert curve[0]["severity/rotation/acc"] == metrics["test/iid/acc"]
    assert curve[5]["severity/position/acc"] == metrics["test/position/s5/acc"]
    assert got["defined"]["severity/rotation/*"] == "severity"
    assert got["defined"]["train/*"] == got["defined"]["val/*"] == "trainer/global_step"
    steps = [row["trainer/global_step"] for row in got["history"] if "train/loss" in row]
    assert steps and steps == sorted(steps)  # every training row carries its optimizer step
    assert not any(k.startswith("test/") for row in got["history"] for k in row)  # test metrics: summary only

    # Two tables, one panel each: the evaluation sets (compact) and the example images.
    media = run_dir / "files" / "media"
    (results,) = (media / "table").glob("results_*.table.json")
    results = json.loads(results.read_text())
    columns = results["columns"]
    assert columns[:7] == ["set", "family", "severity", "acc", "ece", "coverage", "accepted_acc"]
    estimated = sorted(k.removeprefix("test/iid/") for k in metrics if k.startswith("test/iid/acc_estimate/"))
    assert estimated == ["acc_estimate/atc", "acc_estimate/atc_ne", "acc_estimate/doc"]  # no references
    assert columns[7:10] == [f"auroc/{gate}", f"failure_auroc/{gate}", f"eaurc/{gate}"]
    assert columns[10:] == estimated and len(results["data"]) == 52  # 13 columns, one row per set
    row = dict(zip(columns, results["data"][0], strict=True))
    assert row["acc"] == metrics[f"test/{row['set']}/acc"]
    (examples,) = (media / "table").glob("examples_*.table.json")
    examples = json.loads(examples.read_text())
    assert examples["columns"] == ["set", "image", "true", "predicted", "confidence", "correct"]
    assert len(examples["data"]) == 52 * 4
    assert not (media / "images" / "examples").exists()  # no longer 52 image panels
    media_keys = {k.rsplit("/", 1)[0] for row in got["history"] for k in row if k.endswith("/_type")}
    assert media_keys == {"results", "examples"}  # was results and 52 `examples/<set>` image panels

    # Artifacts: the result files, and the evaluated checkpoint asked for with logger.log_checkpoint.
    run_id = metrics["wandb/run_id"]
    assert got["artifacts"][f"results-{run_id}"][0] == "results"
    assert "metrics.json" in got["artifacts"][f"results-{run_id}"][2]
    kind, aliases, files = got["artifacts"][f"model-{run_id}"]
    assert kind == "model" and cfg.eval.checkpoint in aliases and files == [Path(metrics["checkpoint"]).name]
    assert got["config"]["logger"]["artifacts"] is True  # our keys reach the config, not WandbLogger


class FakeRun:
    id = "abc12345"

    def __init__(self):
        self.logged = []

    def log_artifact(self, artifact, aliases=None):
        self.logged.append((artifact.name, artifact.type, sorted(artifact.manifest.entries), aliases))


def test_the_artifact_switches(tmp_path):
    from shapeshift.tracking.wandb_results import log_result_artifacts

    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "evaluation.json").write_text("{}")
    ckpt = tmp_path / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    run = FakeRun()
    log_result_artifacts(run, {}, tmp_path, ckpt, "best")  # the defaults: results, no checkpoint
    assert run.logged == [("results-abc12345", "results", ["evaluation.json", "metrics.json"], None)]
    run = FakeRun()
    log_result_artifacts(run, {"artifacts": False, "log_checkpoint": True}, tmp_path, ckpt, "best")
    assert run.logged == [("model-abc12345", "model", ["best.ckpt"], ["latest", "best"])]
    run = FakeRun()
    log_result_artifacts(run, {"artifacts": False}, tmp_path, ckpt, "best")
    assert run.logged == []


def test_the_logger_gets_no_keys_of_ours():
    from omegaconf import OmegaConf

    from shapeshift.tracking.loggers import logger_params

    cfg = OmegaConf.create(
        {"_target_": "x.CSVLogger", "save_dir": "out", "artifacts": True, "log_checkpoint": False}
    )
    assert logger_params(cfg) == {"_target_": "x.CSVLogger", "save_dir": "out"}


def make_run(root: Path, name: str, arch: str, aug: str, seed: int, iid: float) -> None:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "output_dir": "${hydra:runtime.output_dir}", "aug": {"name": aug}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    choices = {"hydra": {"runtime": {"choices": {"arch": arch, "aug": aug, "data": "shapes"}}}}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(choices))
    (run / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([f"arch={arch}", f"aug={aug}", f"seed={seed}"])
    )
    m = {"arch": arch, "aug": aug, "seed": seed, "epochs": 4, "test/iid/acc": iid, "test/mix/acc": iid - 0.1}
    m |= {f"test/{f}/s{k}/acc": iid - 0.05 * k for f in FAMILIES for k in range(1, 6)}
    m |= {f"test/{f}/acc": iid - 0.15 for f in FAMILIES} | {"test/ood/acc": iid - 0.15}
    m |= {f"test/{f}/s{k}/auroc/msp": 0.7 for f in FAMILIES for k in range(1, 6)}  # not in the table
    (run / "metrics.json").write_text(json.dumps(m))


def test_the_report_run_has_the_sweep_config_native_charts_and_an_artifact(tmp_path, offline):
    from omegaconf import OmegaConf

    from shapeshift.tracking.after_sweep import ReportAfterSweep

    sweep = tmp_path / "multiruns" / "sweep"
    for i, (aug, seed) in enumerate([("none", 0), ("none", 1), ("basic", 0), ("basic", 1)]):
        make_run(sweep, f"{i}_arch=cnn,aug={aug},seed={seed}", "cnn", aug, seed, 0.9 + 0.02 * seed)
    logger = {"_target_": "lightning.pytorch.loggers.WandbLogger", "project": "shapeshift", "mode": "offline"}
    multirun = {
        "seed": 0,
        "lr": 0.01,
        "output_dir": "${hydra:runtime.output_dir}",  # only Hydra resolves it: kept as written
        "run_name": "lr${lr}",
        "logger": logger,
        "hydra": {"overrides": {"task": ["aug=none,basic", "seed=0,1"]}, "sweeper": {"params": None}},
    }
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "logger": logger})
    ReportAfterSweep(plots=True).on_multirun_end(config)

    (run_dir,) = (sweep / "wandb").glob("offline-run-*")
    got = read_run(run_dir)
    assert got["run"].job_type == "report"
    config = got["config"]
    assert config["lr"] == 0.01 and config["run_name"] == "lr0.01"  # the sweep's config, resolved
    assert "hydra" not in config and "output_dir" in config  # as written where only Hydra resolves it
    assert config["sweep"]["overrides"] == ["aug=none,basic", "seed=0,1"]
    assert got["charts"] == {
        "report/severity/position": "wandb/lineseries/v0",
        "report/severity/scale": "wandb/lineseries/v0",
        "report/iid_acc": "wandb/bar/v0",
        "report/position_s5_acc": "wandb/bar/v0",
        "report/ood_acc": "wandb/bar/v0",
        "report/mix_acc": "wandb/bar/v0",
    }
    # Native charts: one line series per family (a line per cell), a bar chart per main-table column.
    media = run_dir / "files" / "media" / "table" / "report"
    (bar,) = media.glob("ood_acc_table_*.table.json")
    bar = json.loads(bar.read_text())
    assert sorted(row[0] for row in bar["data"]) == ["cnn-basic", "cnn-none"]
    (line,) = (media / "severity").glob("position_table_*.table.json")
    line = json.loads(line.read_text())
    assert {row[1] for row in line["data"]} == {"cnn-basic", "cnn-none"}  # one line per cell
    assert len(line["data"]) == 2 * 6  # severities 0 (i.i.d.) to 5
    # The runs table: identity and headline only (results.csv in the artifact has every column).
    (results,) = media.glob("results_*.table.json")
    results = json.loads(results.read_text())
    assert len(results["data"]) == 4 and len(results["columns"]) < 20
    assert not any("auroc" in c for c in results["columns"])
    # Pictures of accuracy against severity give way to the native charts; every PNG is in the artifact.
    assert not list((run_dir / "files" / "media" / "images" / "report").glob("severity_*.png"))
    (kind, _, files) = got["artifacts"]["report-sweep"]
    assert kind == "report" and {"report.md", "results.csv", "severity_none.png"} <= set(files)
